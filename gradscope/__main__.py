"""``python -m gradscope`` and the ``gradscope`` console command: :func:`gradscope.cli.main`, then exit."""

import os
import sys

from gradscope._interrupts import check_interrupted, remembering_interrupts


def console_main() -> None:
    """Run the command and exit with its status (see :func:`gradscope.cli.main`).

    Ctrl-C, even while the command is still importing JAX, prints one line and exits
    with status 130. After Ctrl-C the process ends at once (``os._exit``, output
    flushed) instead of tearing the interpreter down: after an interrupted XLA
    compile, jaxlib's teardown can crash with a segmentation fault, which would
    replace the status 130.
    """
    try:
        with remembering_interrupts():
            from gradscope.cli import main

            check_interrupted()
        status = main()
    except KeyboardInterrupt:  # while importing, before main() handles Ctrl-C itself
        print(f"{chr(10) if sys.stderr.isatty() else ''}gradscope: interrupted", file=sys.stderr)
        status = 130
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    console_main()
