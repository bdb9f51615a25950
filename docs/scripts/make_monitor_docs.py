"""Run the Python blocks of docs/monitor.md top to bottom and store what they print (and its figure).

Run from the repository root:

    python docs/scripts/make_monitor_docs.py      # about a minute on 2 CPU cores

The blocks run in one namespace, in a temporary directory (the export block writes
files there), exactly as a reader would run them. A block that needs
``gradscope.cells.from_torch`` is skipped, with a message, while gradscope has none.
``quick_numbers()`` reruns the first block (the model and its diagnosis) for
tests/test_docs_numbers.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile

from docnumbers import DOCS, Numbers, publish

PAGE = DOCS / "monitor.md"
FIGURE = DOCS / "figures" / "monitor_training.png"


def blocks() -> list[str]:
    """The page's Python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def run(count: int | None = None) -> tuple[dict, list[str]]:
    """Run the first ``count`` blocks (all by default); return the namespace and each block's printout."""
    import gradscope

    namespace, printed = {}, []
    with tempfile.TemporaryDirectory() as folder, _inside(folder):
        for block in blocks()[:count]:
            if "from_torch" in block or "torch.nn" in block:
                if not hasattr(gradscope.cells, "from_torch"):
                    print("skipped the PyTorch block: this gradscope has no gradscope.cells.from_torch yet")
                    printed.append("")
                    continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(PAGE), "exec"), namespace)
            printed.append(out.getvalue())
    return namespace, printed


@contextlib.contextmanager
def _inside(folder):
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def _text(printout: str) -> str:
    return f"```text\n{printout.rstrip()}\n```"


def quick_numbers():
    """The first block's diagnosis, recomputed (seconds)."""
    _, printed = run(1)
    return "monitor", {"diagnosis_before": _text(printed[0])}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace, printed = run()
    numbers = Numbers("monitor")
    numbers["diagnosis_before"] = _text(printed[0])
    numbers["linen_table"] = _text(printed[1])
    numbers["equinox_table"] = _text(printed[2])
    numbers["training_table"] = _text(printed[3])
    numbers["diagnosis_after"] = _text(printed[4])
    losses = [float(loss) for loss in namespace["losses"]]
    numbers["loss_first"] = f"{sum(losses[:50]) / 50:.3f}"
    numbers["loss_last"] = f"{sum(losses[-50:]) / 50:.3f}"
    numbers["stack_size"] = str(namespace["diagnosis"].stack.state_size)
    numbers["baseline"] = f"{namespace['task'].baseline:.3f}"
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    namespace["fig"].savefig(FIGURE, dpi=150)
    plt.close("all")
    publish(numbers, show=True)


if __name__ == "__main__":
    main()
