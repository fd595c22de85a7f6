"""JupyterLab from the project's venv: it starts, it lists the kernel the chapters ask for, and the
jupytext extension is there (so chapters/*.md open as notebooks). Nothing is left running: only
``--version`` / ``list`` commands are run, no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

JUPYTER = Path(sys.executable).parent / "jupyter"


def _jupyter(*args: str) -> subprocess.CompletedProcess:
    assert JUPYTER.is_file(), (f"{JUPYTER} is missing: install the lab extra "
                               "(make venv, or pip install -c constraints.txt -e '.[lab]')")
    return subprocess.run([str(JUPYTER), *args], capture_output=True, text=True, timeout=120)


def test_jupyter_lab_starts():
    proc = _jupyter("lab", "--version")
    assert proc.returncode == 0, proc.stderr
    major = int(proc.stdout.strip().split(".")[0])
    assert major >= 4, proc.stdout


def test_kernelspec_lists_the_chapters_kernel():
    proc = _jupyter("kernelspec", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "python3" in json.loads(proc.stdout)["kernelspecs"]  # chapters declare kernelspec python3


def test_jupytext_extension_is_installed():
    proc = _jupyter("labextension", "list")
    listing = proc.stdout + proc.stderr
    assert proc.returncode == 0, listing
    assert "jupyterlab-jupytext" in listing and "enabled" in listing.split("jupyterlab-jupytext", 1)[1][:40], listing
