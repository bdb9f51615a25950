"""JAX's persistent compilation cache in a gradscope folder: a second identical run skips XLA's compiler.

Most of a small analysis is compilation: a first call costs many times a warm one (the
benchmarks page measures both), and every new process compiles again. JAX can keep
compiled programs on disk and reuse them in later processes. gradscope uses that as
follows:

* the ``gradscope`` command turns it on for its own process (``--no-cache`` or
  ``GRADSCOPE_CACHE_DIR=off`` turns it off);
* the library leaves JAX's configuration alone unless you opt in, in a notebook or
  script, with :func:`enable_compilation_cache` (it changes JAX's process-wide
  configuration, so it is a call you make, never a side effect of an analysis).

The folder also holds gradscope's own programs traced and lowered
(:mod:`gradscope.core.programs`), so that a later process skips tracing them too.

The folder is ``GRADSCOPE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gradscope/jax``
(``~/.cache/gradscope/jax``). JAX keys each entry by the program, the JAX and jaxlib
versions and the device, so a stale entry is never used; deleting the folder is always
safe. A cache directory you configured for JAX yourself is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from gradscope.core import programs

__all__ = ["CACHE_VARIABLE", "cache_dir", "enable_compilation_cache"]

CACHE_VARIABLE = "GRADSCOPE_CACHE_DIR"
"""Environment variable naming the cache folder; ``off`` (or ``0``, ``none``) disables the cache."""

_OFF = ("off", "0", "none", "false", "no")


def cache_dir() -> Path | None:
    """The folder gradscope caches compiled programs in, or None when ``GRADSCOPE_CACHE_DIR`` says off."""
    configured = os.environ.get(CACHE_VARIABLE, "").strip()
    if configured.lower() in _OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "gradscope" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process, in gradscope's folder.

    Later processes that run the same analyses (same shapes, same JAX) load the compiled
    programs instead of compiling them again. Every program is cached, however fast it
    compiled (JAX's default keeps only those over a second, which leaves out most of
    gradscope's).

    Args:
        path: the folder to use; default :func:`cache_dir`. A cache directory already set
            in JAX's configuration (by you, or by an earlier call) is kept as it is.

    Returns:
        The folder in use, or None if ``GRADSCOPE_CACHE_DIR`` turns the cache off.

    Note:
        This sets ``jax_compilation_cache_dir`` and ``jax_persistent_cache_min_compile_time_secs``
        in JAX's configuration for the whole process, and stores gradscope's programs in the
        folder's ``gradscope-programs`` (:mod:`gradscope.core.programs`).
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        programs.store_in(Path(current))
        return Path(current)
    folder = Path(path).expanduser() if path is not None else cache_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    programs.store_in(folder)
    return folder
