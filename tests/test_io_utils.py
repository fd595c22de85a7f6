"""Atomic writes: strict JSON only, and write errors (full disk, read-only folder) as one clear error."""

from __future__ import annotations

import errno
import json
import math
import os

from pathlib import Path

import numpy as np
import pytest

from routing_laws import io_utils
from routing_laws.errors import RoutingLawsError, ValidationError, check_output_path


def test_json_is_strict_and_names_where_a_nan_is(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(RoutingLawsError, match=r"r.json: refusing to write NaN/Infinity \(not JSON\) at curve\[1\].loss"):
        io_utils.atomic_write_json(path, {"curve": [{"loss": 1.0}, {"loss": np.float32("nan")}]})
    assert not path.exists() and not list(tmp_path.iterdir())
    clean, where = io_utils.nonfinite_to_null({"a": [1.0, math.inf], "b": {"c": np.float64("-inf")}, "d": (2, 3)})
    assert clean == {"a": [1.0, None], "b": {"c": None}, "d": [2, 3]} and where == ["a[1]", "b.c"]
    io_utils.atomic_write_json(path, clean)
    assert json.loads(path.read_text()) == clean
    with pytest.raises(ValueError, match="NaN"):
        io_utils.loads_strict('{"x": NaN}')


@pytest.mark.parametrize("err,hint", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "not writable")])
def test_write_errors_name_the_path_and_leave_nothing(tmp_path, monkeypatch, err, hint):
    path = tmp_path / "out.json"
    io_utils.atomic_write_json(path, {"old": 1})

    def fail(fd):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(io_utils.os, "fsync", fail)
    with pytest.raises(RoutingLawsError, match=f"cannot write {path}.*{hint}"):
        io_utils.atomic_write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io_utils.tempfile, "mkstemp", denied)
    with pytest.raises(RoutingLawsError, match="cannot write .*x.json: Permission denied"):
        io_utils.atomic_write_text(tmp_path / "x.json", "{}")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.undo()
    with pytest.raises(RoutingLawsError, match="cannot write"):
        io_utils.atomic_write_text(blocker / "x.json", "{}")  # parent is a file


def test_stale_temps_are_removed_and_others_kept(tmp_path):
    (tmp_path / ".a.npz.x1.tmp").write_text("")
    (tmp_path / ".b.npz.x1.tmp").write_text("")
    removed = io_utils.remove_stale_temps(tmp_path / "a.npz")
    assert [p.name for p in removed] == [".a.npz.x1.tmp"] and (tmp_path / ".b.npz.x1.tmp").exists()


def test_portable_path(tmp_path):
    root = io_utils.repo_root()
    assert io_utils.portable_path(root / "data" / "x.txt") == "data/x.txt"
    assert io_utils.portable_path(tmp_path / "y.txt", root=root / "data") == "<outside>/y.txt"
    assert io_utils.portable_path("rel/z.txt") == "rel/z.txt" and io_utils.portable_path(None) is None


def test_output_paths_are_checked_before_work(tmp_path):
    assert check_output_path("--out", tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the probe leaves nothing, creates no folder
    with pytest.raises(ValidationError, match="--out: .* is a folder"):
        check_output_path("--out", tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError, match="--out: .* which is a file"):
        check_output_path("--out", tmp_path / "file" / "r.json")



def test_repo_root_explains_a_non_editable_install(tmp_path, monkeypatch):
    here = Path(__file__).resolve().parents[1]
    assert io_utils.repo_root({}) == here
    (tmp_path / "clone" / "data" / "paper").mkdir(parents=True)
    assert io_utils.repo_root({io_utils.ROOT_ENV: str(tmp_path / "clone")}) == (tmp_path / "clone").resolve()
    with pytest.raises(ValidationError, match="clone the repository"):
        io_utils.repo_root({io_utils.ROOT_ENV: str(tmp_path / "empty")})
    # what `pip install git+...` gives: the package in site-packages, no data/ beside it
    monkeypatch.setattr(io_utils, "__file__", str(tmp_path / "site-packages" / "routing_laws" / "io_utils.py"))
    with pytest.raises(ValidationError, match="non-editable install"):
        io_utils.repo_root({})


def test_cpu_identity_reads_model_and_widest_vector_extension():
    """Provenance names the CPU kind: XLA's CPU kernels, and so a run's last bits, depend on it."""
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx2 avx512f\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert io_utils.cpu_identity(text) == {"cpu_model": "AMD EPYC 9R14", "cpu_simd": "avx512f"}
    assert io_utils.cpu_identity("model name: X\nflags: fpu sse4_2 avx2\n")["cpu_simd"] == "avx2"
    assert io_utils.cpu_identity("flags: fpu\n") == {"cpu_simd": "other"}
    assert io_utils.cpu_identity("") == {}
    with pytest.raises(ValidationError, match="cpuinfo"):
        io_utils.cpu_identity(b"model name: X")
    assert set(io_utils.cpu_identity()) <= {"cpu_model", "cpu_simd"}
    assert io_utils.provenance().get("cpu_model") == io_utils.cpu_identity().get("cpu_model")
