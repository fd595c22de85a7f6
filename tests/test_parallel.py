"""Data/expert parallelism on 8 simulated CPU devices.

XLA_FLAGS must be set before jax is imported, and this pytest process has imported jax already, so
the multi-device work runs once in a child Python process (this file run as a script, ``child``
mode) that writes its results as JSON; the tests assert on them. Cheap validation runs in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from routing_laws import parallel
from routing_laws.errors import ValidationError

HERE = Path(__file__).resolve().parent
ROUTERS = ("dense", "sbase", "rlr", "hash")
FAST_ROUTERS = ("sbase", "rlr")  # the two whose meaning could depend on sharding: global Sinkhorn, sharded RNG
GROUPED = "sbase/g8"  # S-BASE with dispatch_groups=8: the explicit all-to-all dispatch on expert meshes
MESHES = ("8x1", "1x8", "2x4")  # compared with one device (mesh=None); fast tier: FAST_ROUTERS on 2x4
RTOL = 1e-4  # loss trajectories: relative difference per step, 1 vs 8 devices
# Compiling dominates (the child compiles ~12 programs); unoptimised XLA and a persistent cache shared by
# the runs cut it ~4x. Both sides of every comparison run under the same flags.
CHILD_XLA = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


# ------------------------------------------------------------------------------------------ child

def _child(out_path: str, routers: tuple[str, ...], meshes: tuple[str, ...], extras: bool) -> None:
    """Runs under 8 simulated devices: loss curves on 1 device and on ``meshes`` for ``routers``, and
    (``extras``) shardings, cross-mesh checkpoint, bad shapes, S-BASE balance; results to ``out_path``."""
    sys.path.insert(0, str(HERE))
    import jax

    from conftest import synthetic_tokens, tiny_model
    from routing_laws import routers as router_fns
    from routing_laws import train as train_lib
    from routing_laws.config import RouterConfig, TrainConfig

    assert jax.device_count() == 8, jax.devices()
    data = types.SimpleNamespace(train=synthetic_tokens(seed=0), val=synthetic_tokens(n=4000, seed=0)[::-1].copy(),
                                 vocab_size=64, meta={"hash": "synthetic"})
    tcfg = TrainConfig(tokens=16 * 16 * 5, batch_size=16, learning_rate=1e-2, eval_tokens=16 * 16, eval_every=1)
    mesh_of = {m: parallel.make_mesh(*parallel.parse_mesh(m)) for m in MESHES}
    out: dict = {"curves": {}, "specs": {}, "errors": {}}

    def curve(rec):
        return {"train": [c["train_loss"] for c in rec["train_curve"]], "val": [c["val_loss"] for c in rec["curve"]]}

    for router in routers:
        kind, _, groups = router.partition("/g")
        cfg = tiny_model(kind, 1 if kind == "dense" else 8, dispatch_groups=int(groups or 1))
        out["curves"][router] = {"1": curve(train_lib.train(cfg, tcfg, data, progress=False))}
        for m in meshes:
            out["curves"][router][m] = curve(train_lib.train(cfg, tcfg, data, progress=False, mesh=mesh_of[m]))

    if not extras:
        Path(out_path).write_text(json.dumps(out))
        return
    # two runs of one shape on one mesh (other seed and learning rate) compile the sharded steps once
    import collections

    compiles: collections.Counter = collections.Counter()

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles[kw.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    cfg = tiny_model("hash", 8, d_model=24, head_dim=12)  # a shape no other part of the child compiles
    losses = [train_lib.train(cfg, tcfg.replace(seed=s, learning_rate=lr), data, progress=False,
                              mesh=mesh_of["2x4"])["final_val_loss"] for s, lr in ((0, 1e-2), (3, 3e-3))]
    jax.monitoring.unregister_event_duration_listener(listener)
    out["mesh_compiles"] = {"counts": dict(compiles), "losses": losses}
    # shardings of placed parameters and Adam moments (the same helper train() uses)
    cfg = tiny_model("sbase", 8)
    net = train_lib.model_lib.build(cfg)
    params = net.init(jax.random.PRNGKey(0), np.zeros((1, 16), np.int32), is_training=True)
    opt = train_lib.optimizer(tcfg, 5)
    for m in ("2x4", "1x8"):
        p, o, *_ = parallel.shard_training(mesh_of[m], cfg, 16, params, opt.init(params), lambda *a: a, lambda *a: a)
        out["specs"][m] = {"params": parallel.describe(p), "opt": parallel.describe(o),
                           "local_w_in": [list(s.data.shape) for s in next(v for k, v in p.items() if "moe_" in k)["w_in"].addressable_shards]}

    # collectives in the compiled training step: the global queue (G = 1) vs all-to-all dispatch (G = 8)
    import re

    batch = np.zeros((16, 17), np.int32)
    out["collectives"] = {}
    for groups in (1, 8):
        cfg = tiny_model("hash", 8, dispatch_groups=groups)
        net = train_lib.model_lib.build(cfg)
        params = net.init(jax.random.PRNGKey(0), batch[:, :-1], is_training=True)
        loss_fn = train_lib.make_loss_fn(cfg, np.float32)
        grad = lambda p, b: jax.grad(lambda q: loss_fn(q, jax.random.PRNGKey(0), b, True)[0])(p)  # noqa: E731
        mesh = mesh_of["1x8"]
        p_sh = parallel.param_shardings(params, mesh)
        fn = jax.jit(parallel.traced_on(mesh, grad), in_shardings=(p_sh, parallel.batch_sharding(mesh)), out_shardings=p_sh)
        hlo = fn.lower(parallel.put(params, p_sh), parallel.put_batch(batch, mesh)).compile().as_text()
        gathers = re.findall(r"= (\w+)\[[^\]]*\]\S* all-gather(?:-start)?\(", hlo)  # element type of each
        out["collectives"][str(groups)] = {"all-to-all": len(re.findall(r"\ball-to-all(?:-start)?\(", hlo)),
                                           "float_all_gather": sum(t.startswith("f") for t in gathers)}

    # a checkpoint written on 8x1 resumes on 2x4 and continues to the one-device result
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = tiny_model("sbase", 8)
        ck = tcfg.replace(checkpoint_every=1)
        part = train_lib.train(cfg, ck, data, run_dir=tmp, progress=False, stop_after_steps=3, mesh=mesh_of["8x1"])
        done = train_lib.train(cfg, ck, data, run_dir=tmp, progress=False, mesh=mesh_of["2x4"])
        out["ckpt"] = {"part_steps": part["steps"], "resumed_from": done["resumed_from_step"], "status": done["status"],
                       **curve(done)}

    # bad shapes: E not divisible by the expert axis, batch not divisible by the devices
    for name, fn in {
        "E4_on_1x8": lambda: train_lib.train(tiny_model("hash", 4), tcfg, data, progress=False, mesh=mesh_of["1x8"]),
        "batch12_on_8": lambda: train_lib.train(tiny_model("dense"), tcfg.replace(batch_size=12), data, progress=False,
                                                mesh=mesh_of["2x4"]),
        "params_E4_on_1x8": lambda: parallel.param_shardings({"m": {"w_in": np.zeros((4, 2, 2))}}, mesh_of["1x8"]),
        "data3": lambda: parallel.make_mesh(3, 1),
        "expert3": lambda: parallel.make_mesh(expert=3),
    }.items():
        try:
            fn()
            out["errors"][name] = None
        except ValidationError as e:
            out["errors"][name] = str(e)

    # S-BASE: global balance (default) vs per data shard, on logits whose preferred expert depends on the shard
    rc = RouterConfig(kind="sbase", n_experts=8)
    rng = np.random.default_rng(0)
    T, S = 1024, 8
    shard_T = np.repeat(np.arange(S), T // S)
    logits_TE = rng.normal(size=(T, 8)).astype(np.float32)
    logits_TE[np.arange(T), (shard_T + rng.integers(0, 2, T)) % 8] += 2.0  # shard s prefers experts s, s+1
    z = jax.numpy.asarray(logits_TE)
    out["sbase"] = {"structured": router_fns.sbase_balance(z, rc, mesh_of["8x1"]),
                    "iid": router_fns.sbase_balance(jax.numpy.asarray(rng.normal(size=(T, 8)), jax.numpy.float32), rc,
                                                  mesh_of["8x1"])}
    one = np.asarray(router_fns.sbase_choice(z, rc))
    out["sbase"]["global_equals_one_device"] = float(np.mean(
        np.asarray(jax.jit(lambda x: router_fns.sbase_choice(x, rc))(parallel.put_batch(logits_TE, mesh_of["8x1"]))) == one))
    ref = np.concatenate([np.asarray(router_fns.sbase_choice(b, rc)) for b in np.split(logits_TE, S)])
    out["sbase"]["per_shard_equals_blockwise"] = float(np.mean(np.asarray(router_fns.sbase_per_shard(z, rc, mesh_of["8x1"])) == ref))
    Path(out_path).write_text(json.dumps(out))


def _run_child(tmp: Path, routers: tuple[str, ...], meshes: tuple[str, ...], extras: bool) -> dict:
    out = tmp / "out.json"
    env = dict(os.environ, XLA_FLAGS=CHILD_XLA, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp / "cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    proc = subprocess.run([sys.executable, __file__, "child", str(out), ",".join(routers), ",".join(meshes),
                           str(int(extras))], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    return _run_child(tmp_path_factory.mktemp("parallel"), FAST_ROUTERS + (GROUPED,), ("2x4",), True)


@pytest.fixture(scope="module")
def child_slow(tmp_path_factory):
    return _run_child(tmp_path_factory.mktemp("parallel_slow"), ROUTERS, MESHES, False)


# ------------------------------------------------------------------------------------------ tests

def _same_trajectory(curves: dict, router: str, mesh: str) -> None:
    ref, got = curves[router]["1"], curves[router][mesh]
    assert len(got["train"]) == len(ref["train"]) == 5
    for key in ("train", "val"):
        np.testing.assert_allclose(got[key], ref[key], rtol=RTOL, err_msg=f"{router} {mesh} {key}")
    assert ref["train"][-1] < ref["train"][0]  # it trains at all


@pytest.mark.parametrize("router", FAST_ROUTERS)
def test_same_loss_trajectory_on_2x4(child, router):
    _same_trajectory(child["curves"], router, "2x4")


def test_all_to_all_dispatch_same_trajectory_and_no_token_gather(child):
    """dispatch_groups=8 on a 2x4 mesh: the explicit all-to-all path gives the one-device trajectory, and
    the compiled step moves tokens with all-to-alls instead of gathering every token's activations."""
    _same_trajectory(child["curves"], GROUPED, "2x4")
    c = child["collectives"]
    assert c["8"]["all-to-all"] >= 4 and c["8"]["float_all_gather"] == 0, c
    assert c["1"]["float_all_gather"] >= 1, c  # the global queue: XLA gathers the token activations


@pytest.mark.slow
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mesh", MESHES)
def test_same_loss_trajectory_every_router_and_mesh(child_slow, router, mesh):
    _same_trajectory(child_slow["curves"], router, mesh)


@pytest.mark.parametrize("mesh", ["2x4", "1x8"])
def test_expert_weights_and_moments_are_sharded(child, mesh):
    specs = child["specs"][mesh]
    n_exp = int(mesh.split("x")[1])
    for tree in ("params", "opt"):
        expert = {k: v for k, v in specs[tree].items() if k.endswith("['w_in']") or k.endswith("['w_out']")}
        routed = {k: v for k, v in expert.items() if "moe_" in k}
        assert routed, specs[tree]
        assert all(v == ["expert"] for v in routed.values()), routed
        others = {k: v for k, v in specs[tree].items() if k not in routed}
        assert others and all(v == [] for v in others.values()), others
    assert child["specs"][mesh]["local_w_in"] == [[8 // n_exp, 16, 64]] * 8  # each device holds E / expert experts


def test_checkpoint_moves_between_meshes(child):
    ck, ref = child["ckpt"], child["curves"]["sbase"]["1"]
    assert ck["part_steps"] == 3 and ck["resumed_from"] == 3 and ck["status"] == "finished"
    np.testing.assert_allclose(ck["train"], ref["train"], rtol=RTOL)
    np.testing.assert_allclose(ck["val"], ref["val"], rtol=RTOL)


def test_runs_of_one_shape_on_a_mesh_compile_the_sharded_step_once(child):
    got = child["mesh_compiles"]
    assert got["losses"][0] != got["losses"][1]  # really two different runs
    counts = got["counts"]
    assert counts.get("jit(train_step)") == 1 and counts.get("jit(eval_step)") == 1, counts


def test_bad_mesh_shapes_are_clear(child):
    errs = child["errors"]
    assert "n_experts=4 is not divisible by the expert axis 8" in errs["E4_on_1x8"]
    assert "batch of 12 sequences cannot be split over 8 devices" in errs["batch12_on_8"]
    assert "E=4 experts, not divisible by the expert axis 8" in errs["params_E4_on_1x8"]
    assert "3 x 1 = 3 does not match the 8 devices" in errs["data3"]
    assert "expert axis 3 does not divide the 8 devices" in errs["expert3"]


def test_sbase_global_and_per_shard(child):
    sb = child["sbase"]
    assert sb["per_shard_equals_blockwise"] == 1.0  # shard_map per shard == Sinkhorn on each block alone
    assert sb["global_equals_one_device"] >= 0.99  # global under sharding == one device (float reduction order)
    g, s = sb["structured"]["global"], sb["structured"]["per_shard"]
    assert g["max_over_mean"] < 1.3 and s["max_over_mean"] < 1.3  # both balance the whole batch
    # per-shard balancing also balances each shard, global balancing lets a shard crowd its experts
    assert s["worst_shard_max_over_mean"] < 1.5 < g["worst_shard_max_over_mean"]
    assert g["top1_agreement"] > s["top1_agreement"]  # ... at the price of overriding more preferences


def test_parse_and_make_mesh_validate():
    import jax

    assert parallel.parse_mesh("2x4") == (2, 4) and parallel.parse_mesh("auto") == (None, 1)
    assert parallel.parse_mesh(None) is None
    for bad in ("2", "2x", "ax4", "0x8", "2x4x1"):
        with pytest.raises(ValidationError, match="--mesh"):
            parallel.parse_mesh(bad)
    fake8 = [jax.devices()[0]] * 8  # validation happens before any device is touched
    with pytest.raises(ValidationError, match="expert axis 3 does not divide the 8 devices"):
        parallel.make_mesh(expert=3, devices=fake8)
    with pytest.raises(ValidationError, match="4 x 4 = 16 does not match the 8 devices"):
        parallel.make_mesh(4, 4, devices=fake8)
    mesh = parallel.make_mesh()
    assert dict(mesh.shape) == {"data": jax.device_count(), "expert": 1}
    with pytest.raises(ValidationError, match="mesh"):
        parallel.param_shardings({}, "2x4")


def test_init_distributed_env_handling(monkeypatch):
    calls = []
    monkeypatch.setattr("jax.distributed.initialize", lambda **kw: calls.append(kw))
    assert parallel.init_distributed({}) is False and not calls
    with pytest.raises(ValidationError, match="missing JAX_NUM_PROCESSES, JAX_PROCESS_ID"):
        parallel.init_distributed({"JAX_COORDINATOR_ADDRESS": "h:1"})
    with pytest.raises(ValidationError, match="0 <= JAX_PROCESS_ID < JAX_NUM_PROCESSES"):
        parallel.init_distributed({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"})
    with pytest.raises(ValidationError, match="host:port"):
        parallel.init_distributed({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    assert parallel.init_distributed({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
    assert calls == [{"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}]


def test_cli_rejects_bad_mesh(capsys):
    from routing_laws import cli

    assert cli.main(["train", "--mesh", "3x", "--no-progress"]) == 2
    assert "--mesh" in capsys.readouterr().err


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "child":
    _child(sys.argv[2], tuple(sys.argv[3].split(",")), tuple(sys.argv[4].split(",")), sys.argv[5] == "1")
