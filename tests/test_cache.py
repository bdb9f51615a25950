"""The persistent compilation cache: opt-in for the library, on by default for the command."""

from __future__ import annotations

import textwrap

import jax
import pytest

import gradscope
from gradscope import cli
from gradscope.core import cache, programs


# A fresh process: analyse a tiny cell with the cache on, report JAX's cache events.
_PROBE = textwrap.dedent("""
    import json, jax, jax.monitoring
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import gradscope
    folder = gradscope.enable_compilation_cache()
    cell = gradscope.VanillaRNN(8, 1)
    params = cell.init(jax.random.key(0))
    gradscope.jacobian_spectra(cell, params, jax.numpy.ones((12, 1)))
    print(json.dumps({"folder": str(folder), "hits": events.count("/jax/compilation_cache/cache_hits"),
                      "misses": events.count("/jax/compilation_cache/cache_misses")}))
""")


def test_a_second_process_loads_what_the_first_compiled(tmp_path, fresh_process):
    first = fresh_process(_PROBE, tmp_path / "jax")
    second = fresh_process(_PROBE, tmp_path / "jax")
    assert first["folder"] == str(tmp_path / "jax")
    assert first["misses"] > 0 and first["hits"] == 0
    assert second["hits"] == first["misses"] and second["misses"] == 0
    assert any((tmp_path / "jax").iterdir())


def test_the_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_VARIABLE, str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    monkeypatch.setenv(cache.CACHE_VARIABLE, "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv(cache.CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "gradscope" / "jax"


def test_importing_and_analysing_leave_jax_config_alone():
    before = jax.config.jax_compilation_cache_dir
    cell = gradscope.VanillaRNN(4, 1)
    gradscope.jacobian_spectra(cell, cell.init(jax.random.key(0)), jax.numpy.ones((5, 1)))
    assert jax.config.jax_compilation_cache_dir == before


def test_a_folder_you_configured_is_kept(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    try:
        assert cache.enable_compilation_cache(tmp_path / "other") == tmp_path / "mine"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        programs.store_in(None)


@pytest.mark.parametrize("argv, enabled", [(["compare"], True), (["compare", "--no-cache"], False),
                                           (["calibrate", "--no-cache"], False)])
def test_the_command_turns_the_cache_on_unless_told_not_to(monkeypatch, argv, enabled):
    calls = []
    monkeypatch.setattr(cache, "enable_compilation_cache", lambda: calls.append(1))
    args = cli.build_parser().parse_args(argv)
    monkeypatch.setattr(args, "handler", lambda *a: 0, raising=False)
    assert cli._dispatch(args, argv) == 0
    assert bool(calls) == enabled
