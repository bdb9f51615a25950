"""A second Python process that writes figures, so a report draws two figures at a time.

Drawing and encoding figures is most of what a warm ``gradscope compare`` does (the
compiled programs come from the cache), and matplotlib draws on one core. The command
starts a :class:`FigureWorker` before its analysis, so the helper imports matplotlib
while JAX works; the report then hands it pickled figures to save while the command
saves the others itself (:func:`gradscope.report.write_report`, ``worker=``).

The helper reads its jobs from standard input and ends when that closes, so it never
outlives the command, whatever ends the command. It runs in a session of its own, so
Ctrl-C in the terminal reaches only the command, which decides what an interrupt means
and stops the helper itself. It reads the same matplotlibrc as the command, so the files
it writes equal the command's own; the library never starts one (your notebook's
rcParams live only in your process).

Run as ``python -m gradscope.display.figure_worker`` it is the helper.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import traceback

__all__ = ["FigureWorker"]


class FigureWorker:
    """A helper process that saves figures with :func:`gradscope.plotting.save_figure`.

    Use it as a context manager (the helper stops when the block ends)::

        with FigureWorker() as worker:
            ...                                # analysis; meanwhile the helper imports matplotlib
            worker.submit([(fig, "figures/a", {"formats": ("png",)})])
            ...                                # save other figures here
            worker.wait()                      # True: every submitted file is written
    """

    def __init__(self):
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "MPLBACKEND": "agg"}, start_new_session=True)  # Ctrl-C reaches the command only
        self._sender: threading.Thread | None = None
        self._send_error: BaseException | None = None

    def __enter__(self) -> FigureWorker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def submit(self, jobs) -> tuple[list, list]:
        """Send ``[(figure, path, save_figure options), ...]`` to be saved, all in one message.

        Returns at once: the (possibly large) message is written by a thread, so drawing
        can go on here while the helper reads it.

        Returns:
            ``(taken, refused)``: the jobs sent, and those whose figures cannot be pickled
            (a figure holding a lambda, say), which are yours to save.

        Raises:
            RuntimeError: a submission is still waiting for :meth:`wait`.
        """
        if self._sender is not None:
            raise RuntimeError("the figure worker is still saving the last submission; call wait() first")
        taken, refused, messages = [], [], []
        for job in jobs:
            try:
                messages.append(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            except (pickle.PicklingError, TypeError, AttributeError):
                refused.append(job)
            else:
                taken.append(job)
        if messages:
            self._start_sending(pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL))
        return taken, refused

    def _start_sending(self, message: bytes) -> None:
        self._sender = threading.Thread(target=self._send, args=(message,), daemon=True)
        self._sender.start()

    def _send(self, message: bytes) -> None:
        try:
            self._process.stdin.write(message)
            self._process.stdin.flush()
        except OSError as err:  # the helper ended: wait() reports it
            self._send_error = err

    def wait(self) -> bool:
        """Wait until the submitted figures are saved; False if the helper could not save them.

        On False, the helper's traceback (if any) has been printed to standard error and
        the helper is stopped; save the figures yourself.
        """
        sender, self._sender = self._sender, None
        if sender is None:
            return True
        sender.join()
        if self._send_error is None:
            try:
                failure = pickle.load(self._process.stdout)
            except (EOFError, pickle.UnpicklingError) as err:
                failure = f"the figure worker ended without answering ({err!r})"
            if failure is None:
                return True
        else:
            failure = f"the figure worker could not be reached ({self._send_error!r})"
        print(f"gradscope: {failure}\nsaving those figures in this process instead", file=sys.stderr)
        self.stop()
        return False

    def stop(self) -> None:
        """End the helper now (a job in progress is abandoned) and wait until it has exited."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            with contextlib.suppress(OSError):  # a pipe the helper broke
                stream.close()


def _serve(jobs_in, answers_out) -> None:
    """Save each message's figures; answer None, or the traceback text of a failure."""
    import matplotlib.pyplot as plt

    from gradscope.plotting.style import save_figure  # matplotlib only: gradscope's figures pickle without JAX

    while True:
        try:
            jobs = pickle.load(jobs_in)
        except EOFError:
            return
        answer = None
        try:
            for job in jobs:
                figure, path, options = pickle.loads(job)
                save_figure(figure, path, **options)
                plt.close(figure)
        except Exception:  # noqa: BLE001  (reported to the command, which saves the figures itself)
            answer = traceback.format_exc()
        pickle.dump(answer, answers_out)
        answers_out.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.flush()
    os._exit(0)  # nothing to tear down: the command owns every file; skips the interpreter's teardown
