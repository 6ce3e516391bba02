"""The notebooks in notebooks/ run top to bottom, each in a fresh kernel.

Every claim a notebook makes is an `assert` in one of its cells, so a
notebook that runs is a notebook whose claims held on this machine. Cells
run with notebooks/ as the working directory, in a kernel started with the
same Python as the tests.
"""

import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 300


def test_there_are_notebooks():
    assert [p.name[:3] for p in NOTEBOOK_FILES] == ["01_", "02_", "03_", "04_", "05_"]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_is_stored_valid_and_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{path.name} is stored with outputs (cell {cell.get('id')}); clear them before saving"
        )
    sources = "\n".join(cell.source for cell in code)
    assert "assert " in sources, f"{path.name} makes no checked claim"


def _kernel_manager():
    from jupyter_client.manager import AsyncKernelManager

    class SamePythonKernelManager(AsyncKernelManager):
        """Starts the kernel with this Python (the test environment), whatever kernelspec is installed."""

        def format_kernel_cmd(self, extra_arguments=None):
            return [
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "-f",
                os.path.realpath(self.connection_file),
                *(extra_arguments or []),
            ]

    return SamePythonKernelManager(kernel_name="python3")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_runs(path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": "tensorflow",
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    env.pop("KERAS_REPRO_SEED", None)  # a root seed inherited from the test process
    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the traceback without terminal colours
        pytest.fail(f"{path.name}: a cell failed:\n{plain}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
