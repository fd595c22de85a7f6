"""Multi-host training for real: two processes x 4 simulated CPU devices joined by ``jax.distributed``
(the README's JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID), gloo collectives.

Both processes run this file as a script (``child`` mode). Stage 1 trains S-BASE with all-to-all
dispatch on a 1x8 mesh, whose expert axis spans both processes, and stops after 3 steps with a
checkpoint; stage 2 resumes that checkpoint on a 2x4 mesh. The result must be the one-device run's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
RTOL = 1e-4


def _setup():
    sys.path.insert(0, str(HERE))
    from conftest import synthetic_tokens, tiny_model
    from routing_laws.config import TrainConfig

    data = types.SimpleNamespace(train=synthetic_tokens(seed=0), val=synthetic_tokens(n=4000, seed=0)[::-1].copy(),
                                 vocab_size=64, meta={"hash": "synthetic"})
    tcfg = TrainConfig(tokens=16 * 16 * 5, batch_size=16, learning_rate=1e-2, eval_tokens=16 * 16, eval_every=1,
                       checkpoint_every=1)
    return data, tcfg, tiny_model("sbase", 8, dispatch_groups=8)


def _child(mesh_text: str, run_dir: str, stop: int, out_path: str) -> None:
    import jax

    try:  # CPU collectives across processes (jax >= 0.4.3x); newer versions may pick gloo by themselves
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception:  # noqa: BLE001
        pass
    from routing_laws import parallel
    from routing_laws import train as train_lib

    assert parallel.init_distributed() and jax.process_count() == 2 and jax.device_count() == 8
    data, tcfg, cfg = _setup()
    mesh = parallel.make_mesh(*parallel.parse_mesh(mesh_text))
    rec = train_lib.train(cfg, tcfg, data, run_dir=f"{run_dir}/p{jax.process_index()}", progress=False, mesh=mesh,
                          stop_after_steps=stop or None)
    Path(f"{out_path}.{jax.process_index()}").write_text(json.dumps(
        {"steps": rec["steps"], "resumed_from": rec["resumed_from_step"], "status": rec["status"],
         "train": [c["train_loss"] for c in rec["train_curve"]], "val": [c["val_loss"] for c in rec["curve"]]}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp: Path, mesh: str, stop: int, tag: str) -> list[dict]:
    port = _free_port()
    base = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2")
    out = tmp / tag
    procs = [subprocess.Popen([sys.executable, __file__, "child", mesh, str(tmp / "ck"), str(stop), str(out)],
                              env=dict(base, JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return [json.loads(Path(f"{out}.{i}").read_text()) for i in range(2)]


def test_two_processes_train_checkpoint_and_resume_on_another_mesh(tmp_path):
    from routing_laws import train as train_lib

    data, tcfg, cfg = _setup()
    ref = train_lib.train(cfg, tcfg.replace(checkpoint_every=0), data, progress=False)
    ref_train, ref_val = [c["train_loss"] for c in ref["train_curve"]], [c["val_loss"] for c in ref["curve"]]
    first = _launch(tmp_path, "1x8", 3, "first")  # experts spread over both processes
    assert all(r["steps"] == 3 and r["status"] == "partial" for r in first)
    for r in first:
        np.testing.assert_allclose(r["train"], ref_train[:3], rtol=RTOL)
    done = _launch(tmp_path, "2x4", 0, "done")
    for r in done:
        assert r["resumed_from"] == 3 and r["status"] == "finished"
        np.testing.assert_allclose(r["train"], ref_train, rtol=RTOL)
        np.testing.assert_allclose(r["val"], ref_val, rtol=RTOL)
    assert ref_train[-1] < ref_train[0]


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "child":
    _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
