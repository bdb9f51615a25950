"""Ctrl-C that always stops the ``gradscope`` command, even when a library swallows it.

JAX runs a callback on every garbage collection; a KeyboardInterrupt raised while it
runs is dropped, with an "Exception ignored in: <function _xla_gc_callback ...>"
traceback on stderr, and the program carries on (jax-ml/jax#18246). Collections are
frequent while JAX is imported and while it traces, so this loses a fair share of
Ctrl-C presses. :func:`remembering_interrupts` records every Ctrl-C, keeps such dropped
ones off stderr, and :func:`check_interrupted` raises them again where the command
can stop cleanly. Kept free of heavy imports: the command uses it while importing JAX.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["check_interrupted", "remembering_interrupts"]

_PRESSES: list = []


def _remember(signum, frame):
    _PRESSES.append(signum)
    raise KeyboardInterrupt


def _quiet_dropped_interrupts(previous):
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):  # remembered: check_interrupted raises it
            previous(unraisable)
    return hook


@contextlib.contextmanager
def remembering_interrupts():
    """While the block runs, Ctrl-C raises KeyboardInterrupt as usual and is also remembered.

    Only Python's default SIGINT handler is replaced, and only in the main thread;
    otherwise the block runs unchanged. Both the handler and ``sys.unraisablehook``
    are restored afterwards.
    """
    _PRESSES.clear()
    ours = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if not ours:
        yield
        return
    previous_hook = sys.unraisablehook
    signal.signal(signal.SIGINT, _remember)
    sys.unraisablehook = _quiet_dropped_interrupts(previous_hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = previous_hook


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside :func:`remembering_interrupts` and got lost."""
    if _PRESSES:
        raise KeyboardInterrupt
