"""Checkpoints: exact round trip, no code execution on load, tampering and corruption detected, atomic writes
that survive a SIGKILL mid-write, and ``train`` writing every ``checkpoint_every`` steps."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from conftest import tiny_model
from routing_laws import checkpoint
from routing_laws import train as train_lib
from routing_laws.errors import RoutingLawsError

LIB = Path(checkpoint.__file__).resolve().parents[1]


class Moments(NamedTuple):
    count: np.ndarray
    mu: dict


def _trees(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {"lm/moe_1": {"w_in": rng.normal(size=(4, 8, 32)).astype(np.float32),
                           "w_router": rng.normal(size=(8, 4)).astype(np.float32)},
              "lm/ln": {"scale": np.ones((8,), np.float32)}}
    opt = (Moments(np.asarray(3, np.int32), {k: {n: np.zeros_like(a) for n, a in v.items()} for k, v in params.items()}),)
    return {"params": params, "opt_state": opt, "window": {"lm_loss": np.asarray([4.1, 4.0], np.float32)}}


def _templates(trees):
    return {"params": trees["params"], "opt_state": trees["opt_state"], "window": None}


FP = {"model": {"d_model": 8, "sizes": (1, 2)}, "data": ["abc"]}


def _save(path, trees=None, step=7, fp=FP):
    trees = trees or _trees()
    return checkpoint.save(path, step=step, fingerprint=fp, trees=trees, meta={"curve": [{"step": 4, "val_loss": 4.2}]})


def _rewrite(path: Path, edit) -> None:
    """Rewrite the zip at ``path`` with ``edit(name, bytes) -> bytes`` applied to each member (a tamperer's tool)."""
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, edit(name, data))


def test_round_trip_is_exact_and_readable_by_numpy(tmp_path):
    trees = _trees()
    path = _save(tmp_path / "checkpoint.npz", trees)
    ck = checkpoint.load(path, fingerprint=json.loads(json.dumps(FP)), templates=_templates(trees))
    assert ck.step == 7 and ck.meta["curve"][0]["val_loss"] == 4.2
    assert isinstance(ck.trees["opt_state"][0], Moments) and ck.trees["opt_state"][0].count.shape == ()
    for name in ("params", "opt_state", "window"):
        a, b = _flat(trees[name]), _flat(ck.trees[name])
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (name, k)
    with np.load(path, allow_pickle=False) as z:  # a plain npz: inspectable with numpy alone
        assert "header.json" in z.files and z["a0.npy"].dtype == np.float32


def _flat(tree):
    import jax

    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_fingerprint_and_structure_are_checked_before_any_array_is_read(tmp_path, monkeypatch):
    trees = _trees()
    path = _save(tmp_path / "checkpoint.npz", trees)

    def no_reads(*a, **k):
        raise AssertionError("an array was read before the header checks")

    monkeypatch.setattr(np.lib.format, "read_array", no_reads)
    with pytest.raises(RoutingLawsError, match="different configuration"):
        checkpoint.load(path, fingerprint={"model": {"d_model": 16}}, templates=_templates(trees))
    other = _trees()
    other["params"]["lm/ln"]["scale"] = np.ones((9,), np.float32)
    with pytest.raises(RoutingLawsError, match=r"does not match this model's params.*\[9\].*\[8\]"):
        checkpoint.load(path, fingerprint=FP, templates=_templates(other))


@pytest.mark.parametrize("edit", ["flip_weights", "edit_step", "edit_meta"])
def test_tampering_is_detected(tmp_path, edit):
    trees = _trees()
    path = _save(tmp_path / "checkpoint.npz", trees)
    header = checkpoint.read_header(path)
    w_in = next(e["member"] for e in header["arrays"] if e["path"].endswith("['w_in']") and e["tree"] == "params")

    def change(name, data):
        if edit == "flip_weights" and name == w_in:  # flip the sign of 1024 float32 weights, shape kept
            arr = bytearray(data)
            start = len(arr) - 4 * 1024
            for i in range(start + 3, len(arr), 4):
                arr[i] ^= 0x80
            return bytes(arr)
        if name == "header.json" and edit != "flip_weights":
            h = json.loads(data)
            if edit == "edit_step":
                h["step"] = 70
            else:
                h["meta"]["curve"][0]["val_loss"] = 1.0
            return json.dumps(h).encode()
        return data

    _rewrite(path, change)
    with pytest.raises(RoutingLawsError, match="fails its content hash"):
        checkpoint.load(path, fingerprint=FP, templates=_templates(trees))


class _Payload:
    """Unpickling this writes a marker file: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_malicious_checkpoints_run_no_code(tmp_path, tiny_data, tiny_train):
    marker = tmp_path / "marker"
    payload = pickle.dumps({"state": _Payload(marker)})
    assert not marker.exists()
    # 1. an old-style pickle checkpoint in the run folder: refused unread
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pkl").write_bytes(payload)
    with pytest.raises(RoutingLawsError, match="never read"):
        train_lib.train(tiny_model(), tiny_train, tiny_data, run_dir=run, progress=False)
    # 2. the pickle renamed to the new file name: not a zip, refused
    (run / "checkpoint.pkl").unlink()
    (run / "checkpoint.npz").write_bytes(payload)
    with pytest.raises(RoutingLawsError, match="unreadable"):
        train_lib.train(tiny_model(), tiny_train, tiny_data, run_dir=run, progress=False)
    # 3. a well-formed header whose array member is a pickled object array (np.save allow_pickle=True)
    trees = _trees()
    path = _save(tmp_path / "evil.npz", trees)
    header = checkpoint.read_header(path)
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    _rewrite(path, lambda name, data: evil.read_bytes() if name == header["arrays"][0]["member"] else data)
    with pytest.raises(RoutingLawsError, match="unreadable"):
        checkpoint.load(path, fingerprint=FP, templates=_templates(trees))
    # 4. a header declaring an object dtype is refused before reading
    _rewrite(path, lambda name, data: data.replace(b'"float32"', b'"object"', 1) if name == "header.json" else data)
    with pytest.raises(RoutingLawsError, match="malformed array entry"):
        checkpoint.load(path, fingerprint=FP, templates=_templates(trees))
    assert not marker.exists()


KILLER = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {lib!r})
    from routing_laws import checkpoint
    trees = {{"params": {{"w": np.arange(1 << 20, dtype=np.float32)}}, "opt_state": {{}}, "window": {{}}}}
    checkpoint.save({path!r}, step=1, fingerprint={{"a": 1}}, trees=trees, meta={{}})
    real = np.lib.format.write_array
    def slow(f, a, **k):  # write half of the array, say so, then hang until killed
        f.write(a.tobytes()[: a.nbytes // 2])
        f.flush()
        print("WRITING", flush=True)
        time.sleep(600)
    np.lib.format.write_array = slow
    checkpoint.save({path!r}, step=2, fingerprint={{"a": 1}}, trees=trees, meta={{}})
""")


def test_sigkill_during_a_write_keeps_the_last_checkpoint_and_the_temp_is_cleaned(tmp_path):
    path = tmp_path / "checkpoint.npz"
    proc = subprocess.Popen([sys.executable, "-c", KILLER.format(lib=str(LIB), path=str(path))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", line + proc.stdout.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    temps = list(tmp_path.glob(".checkpoint.npz.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 1 << 20  # the half-written file, left behind
    assert checkpoint.find(tmp_path) == path and not list(tmp_path.glob("*.tmp"))  # cleaned at the next start
    template = {"params": {"w": np.zeros(1 << 20, np.float32)}, "opt_state": {}, "window": None}
    ck = checkpoint.load(path, fingerprint={"a": 1}, templates=template)
    assert ck.step == 1 and np.array_equal(ck.trees["params"]["w"], np.arange(1 << 20, dtype=np.float32))


def test_train_checkpoints_every_checkpoint_every_steps(tiny_data, tiny_train, tmp_path, monkeypatch):
    """Checkpoints at multiples of checkpoint_every (not only at evaluations, every 4 steps here) and at the end;
    a stale temp file of a killed write is removed when the run starts."""
    saved = []
    real = train_lib.save_state
    monkeypatch.setattr(train_lib, "save_state", lambda d, p, s: (saved.append(s.step), real(d, p, s))[1])
    (tmp_path / ".checkpoint.npz.abc123.tmp").write_bytes(b"half")
    rec = train_lib.train(tiny_model(), tiny_train.replace(checkpoint_every=7), tiny_data, run_dir=tmp_path,
                          progress=False)
    assert rec["status"] == "finished" and rec["total_steps"] == 40
    assert saved == [7, 14, 21, 28, 35, 40]
    assert not list(tmp_path.glob("*.tmp")) and checkpoint.read_header(tmp_path / "checkpoint.npz")["step"] == 40
