"""Write a folder all at once: into a temporary folder beside it, moved into place when complete.

:func:`staged_folder` is how report folders are written: a run stopped half way
(an error, Ctrl-C) leaves the target folder exactly as it was, and an existing
folder's files are replaced only by complete new ones.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from pathlib import Path

__all__ = ["staged_folder"]


@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C (SIGINT) while the block runs and deliver it afterwards, so a move is never cut in half."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # signals are handled in the main thread only; None: a handler not set from Python owns SIGINT
        return
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        signal.raise_signal(signal.SIGINT)


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``, or, if ``folder`` exists, move each file of ``staging`` into it."""
    if not folder.exists():
        staging.rename(folder)
        return
    for source in sorted(path for path in staging.rglob("*") if path.is_file()):
        target = folder / source.relative_to(staging)
        target.parent.mkdir(exist_ok=True)
        os.replace(source, target)


@contextlib.contextmanager
def staged_folder(folder):
    """Yield an empty temporary folder beside ``folder``; when the block finishes, move its files into ``folder``.

    The temporary folder is ``.NAME.partial-XXXXXXXX`` in ``folder``'s parent (created
    if needed), so the final moves are renames within one file system. A new
    ``folder`` appears in one rename; into an existing one each file is moved over
    its old version, and files the block did not write are left alone. Ctrl-C is
    held back during the moves and delivered right after them. If the block raises
    (KeyboardInterrupt included), the temporary folder is removed and ``folder`` is
    untouched.

    Args:
        folder: the folder to create or update.

    Yields:
        The temporary folder (a :class:`~pathlib.Path`) to write into.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()  # honours the umask, unlike tempfile.mkdtemp's 0700
    try:
        yield staging
        with _interrupts_held():
            _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
