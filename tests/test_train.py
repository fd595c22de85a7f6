import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from routing_laws import train as train_lib
from routing_laws.errors import RoutingLawsError, ValidationError


@pytest.mark.parametrize("router,experts", [("dense", 1), ("sbase", 4), ("rlr", 4), ("hash", 4)])
def test_loss_falls_and_record_is_complete(router, experts, tiny_data, tiny_train, tmp_path):
    cfg = tiny_model(router, experts)
    rec = train_lib.train(cfg, tiny_train, tiny_data, record_path=tmp_path / "r.json", progress=False)
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk["final_val_loss"] == pytest.approx(rec["final_val_loss"])
    first = rec["train_curve"][0]["train_loss"]
    assert first < math.log(64) + 0.5
    assert rec["final_val_loss"] < 0.8 * math.log(64), rec["curve"]
    for key in ("accounting", "curve", "tokens_per_s", "wall_s", "provenance", "model", "train", "tokens"):
        assert key in on_disk
    assert on_disk["tokens"] == tiny_train.tokens
    assert on_disk["provenance"]["jax"]
    if experts > 1:
        assert len(on_disk["routing"]["load_LE"]) == 1 and len(on_disk["routing"]["load_LE"][0]) == experts
        assert 0.0 <= on_disk["routing"]["dropped_frac"] <= 1.0
    assert train_lib.load_record(tmp_path / "r.json")["name"] == rec["name"]


@pytest.mark.parametrize("router", ["dense", "rlr"])
def test_resume_gives_identical_result(router, tiny_data, tiny_train, tmp_path):
    cfg = tiny_model(router, 1 if router == "dense" else 4)
    tcfg = tiny_train.replace(checkpoint_every=10)
    full = train_lib.train(cfg, tcfg, tiny_data, run_dir=tmp_path / "a", progress=False)
    part = train_lib.train(cfg, tcfg, tiny_data, run_dir=tmp_path / "b", progress=False, stop_after_steps=17)
    assert part["status"] == "partial" and part["steps"] == 17
    resumed = train_lib.train(cfg, tcfg, tiny_data, run_dir=tmp_path / "b", progress=False)
    assert resumed["resumed_from_step"] == 17 and resumed["status"] == "finished"
    assert resumed["final_val_loss"] == full["final_val_loss"]
    assert [c["val_loss"] for c in resumed["curve"]] == [c["val_loss"] for c in full["curve"]]
    assert resumed["train_curve"] == full["train_curve"]  # the window cut at step 17 is restored exactly


def test_checkpoint_of_other_config_is_refused(tiny_data, tiny_train, tmp_path):
    cfg = tiny_model("dense", 1)
    train_lib.train(cfg, tiny_train, tiny_data, run_dir=tmp_path, progress=False, stop_after_steps=2)
    with pytest.raises(RoutingLawsError, match="different configuration"):
        train_lib.train(cfg, tiny_train.replace(seed=3), tiny_data, run_dir=tmp_path, progress=False)
    (tmp_path / "checkpoint.npz").write_bytes(b"garbage")
    with pytest.raises(RoutingLawsError, match="unreadable"):
        train_lib.train(cfg, tiny_train, tiny_data, run_dir=tmp_path, progress=False)
    (tmp_path / "checkpoint.pkl").write_bytes(b"garbage")
    with pytest.raises(RoutingLawsError, match="pickle checkpoint of an older version"):
        train_lib.train(cfg, tiny_train, tiny_data, run_dir=tmp_path, progress=False)


def test_vocab_mismatch_and_foreign_record(tiny_data, tiny_train, tmp_path):
    with pytest.raises(ValidationError, match="vocab_size"):
        train_lib.train(tiny_model(vocab_size=128), tiny_train, tiny_data, progress=False)
    with pytest.raises(ValidationError, match="record_path: .* is a folder"):  # before any training
        train_lib.train(tiny_model(), tiny_train, tiny_data, progress=False, record_path=tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(RoutingLawsError, match="not a routing-laws run record"):
        train_lib.load_record(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(RoutingLawsError, match="unreadable"):
        train_lib.load_record(tmp_path / "y.json")


def test_schedule_warms_up_and_decays():
    from routing_laws.config import TrainConfig

    s = train_lib.schedule(TrainConfig(learning_rate=1e-3, warmup_frac=0.1, final_lr_frac=0.1), 100)
    lrs = np.array([float(s(i)) for i in range(101)])
    assert lrs[0] == 0 and lrs.max() == pytest.approx(1e-3, rel=1e-3)
    assert lrs[100] == pytest.approx(1e-4, rel=1e-2) and np.argmax(lrs) == 10


@pytest.mark.parametrize("baseline", ["learned", "batch"])
def test_rlr_value_head_learns_and_stays_out_of_the_network(baseline):
    """RL-R's learned baseline: the loss's gradient reaches w_value/b_value, and the value head's MSE
    sends no gradient into the rest of the network (its input is stop-gradient)."""
    import jax
    import jax.numpy as jnp

    from routing_laws import model as model_lib

    cfg = tiny_model("rlr", 4, rlr_baseline=baseline, rlr_loss_coef=0.0, rlr_entropy_coef=0.0, rlr_balance_coef=0.0)
    net = model_lib.build(cfg)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 17)), jnp.int32)
    params = net.init(jax.random.PRNGKey(0), batch[:, :-1], is_training=True)
    names = {k for k, v in params.items() if "w_value" in v}
    assert bool(names) == (baseline == "learned")
    assert model_lib.count_params(cfg).P == sum(x.size for x in jax.tree_util.tree_leaves(params))
    loss_fn = train_lib.make_loss_fn(cfg, jnp.float32)
    g = jax.grad(lambda p: loss_fn(p, jax.random.PRNGKey(1), batch, True)[0])(params)
    if baseline == "learned":
        assert all(float(jnp.abs(g[k]["w_value"]).sum()) > 0 for k in names)
        # with the LM term removed, only the value heads get a gradient
        lm_free = train_lib.make_loss_fn(cfg, jnp.float32)

        def value_only(p):
            total, m = lm_free(p, jax.random.PRNGKey(1), batch, True)
            return total - m["lm_loss"]
        gv = jax.grad(value_only)(params)
        for mod, leaves in gv.items():
            for name, arr in leaves.items():
                if name not in ("w_value", "b_value"):
                    assert float(jnp.abs(arr).sum()) == 0.0, (mod, name)


def test_dispatch_groups_checked_against_the_batch(tiny_data, tiny_train):
    """G must divide batch x seq_len (named error before any work); a G larger than one sequence is fine."""
    with pytest.raises(ValidationError, match="dispatch_groups.*16 x 16 = 256 tokens"):
        train_lib.train(tiny_model("sbase", 4, dispatch_groups=7), tiny_train, tiny_data, progress=False)
    rec = train_lib.train(tiny_model("sbase", 4, dispatch_groups=32), tiny_train.replace(tokens=16 * 16 * 3),
                          tiny_data, progress=False)
    assert rec["status"] == "finished" and math.isfinite(rec["final_val_loss"])


@pytest.mark.parametrize("detach", [True, False])
def test_rlr_policy_terms_reach_the_body_only_when_not_detached(detach):
    """With rlr_detach_input (the default) the REINFORCE, entropy and balance terms train the router weights
    and nothing else; without it they also reach the transformer body through the router's input."""
    from routing_laws import model as model_lib

    cfg = tiny_model("rlr", 4, rlr_detach_input=detach, rlr_value_coef=0.0)
    net = model_lib.build(cfg)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 17)), jnp.int32)
    params = net.init(jax.random.PRNGKey(0), batch[:, :-1], is_training=True)
    loss_fn = train_lib.make_loss_fn(cfg, jnp.float32)

    def policy_terms(p):
        total, m = loss_fn(p, jax.random.PRNGKey(1), batch, True)
        return total - m["lm_loss"]

    g = jax.grad(policy_terms)(params)
    moved = {(mod, name) for mod, leaves in g.items() for name, a in leaves.items() if float(jnp.abs(a).sum()) > 0}
    assert any(name == "w_router" for _, name in moved)
    body = {(mod, name) for mod, name in moved if name not in ("w_router", "w_value", "b_value")}
    assert (not body) if detach else bool(body), body


def test_router_lr_multiplier_and_no_router_decay():
    """optimizer(router_lr_mult=m): w_router's update is m times the plain AdamW update without weight decay;
    every other leaf gets exactly the plain AdamW update (decay included)."""
    tcfg = train_lib.TrainConfig(tokens=4096, batch_size=2, warmup_frac=0.0, weight_decay=0.1)
    rng = np.random.default_rng(1)
    params = {"lm/moe_1": {"w_router": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
                           "w_in": jnp.asarray(rng.normal(size=(4, 8, 32)), jnp.float32)},
              "lm/ln_final": {"scale": jnp.ones((8,), jnp.float32)}}
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 1e-3, jnp.float32), params)
    plain, fast = train_lib.optimizer(tcfg, 100), train_lib.optimizer(tcfg, 100, router_lr_mult=10.0)
    no_decay = train_lib.optimizer(tcfg.replace(weight_decay=0.0), 100)
    for _ in range(3):  # a few steps, so the schedule and Adam moments are exercised
        u_plain, s_plain = plain.update(grads, plain.init(params) if _ == 0 else s_plain, params)
        u_fast, s_fast = fast.update(grads, fast.init(params) if _ == 0 else s_fast, params)
        u_nd, s_nd = no_decay.update(grads, no_decay.init(params) if _ == 0 else s_nd, params)
    np.testing.assert_allclose(u_fast["lm/moe_1"]["w_router"], 10.0 * u_nd["lm/moe_1"]["w_router"], rtol=1e-5)
    np.testing.assert_allclose(u_fast["lm/moe_1"]["w_in"], u_plain["lm/moe_1"]["w_in"], rtol=1e-6)
    np.testing.assert_allclose(u_fast["lm/ln_final"]["scale"], u_plain["lm/ln_final"]["scale"], rtol=1e-6)
    with pytest.raises(ValidationError, match="router_lr_mult"):
        train_lib.optimizer(tcfg, 100, router_lr_mult=0.0)


def test_provenance_names_the_loaded_code_and_a_moved_head(monkeypatch):
    """A record names the commit of the code its process loaded; if HEAD moved since, that is recorded too."""
    from routing_laws import io_utils

    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "head123")
    p = io_utils.provenance("loaded456")
    assert p["commit"] == "loaded456" and p["head_commit"] == "head123"
    p = io_utils.provenance("head123")
    assert p["commit"] == "head123" and "head_commit" not in p
    assert io_utils.provenance()["commit"] == "head123"


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in a record")
    return json.loads(text, parse_constant=refuse)


def test_exploding_learning_rate_ends_failed_with_a_reason_in_strict_json(tiny_data, tiny_train, tmp_path):
    rec = train_lib.train(tiny_model("sbase", 4), tiny_train.replace(learning_rate=1e4), tiny_data,
                          record_path=tmp_path / "r.json", progress=False)
    assert rec["status"] == "failed" and rec["steps"] < rec["total_steps"], rec["train_curve"]
    assert rec["failure"]["step"] == rec["steps"] and "diverged at step" in rec["failure"]["reason"]
    on_disk = _strict((tmp_path / "r.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["final_val_loss"] is None
    assert train_lib.load_record(tmp_path / "r.json")["failure"] == rec["failure"]


def test_divergence_rule():
    """Non-finite losses fail at once; a finite loss over max(2 x initial, ln V + 1) fails after two windows
    in a row or at the last window; one window over the limit followed by a normal one does not."""
    state = train_lib.RunState(step=0, params=None, opt_state=None, initial_loss=4.2)
    rule = train_lib.Divergence(64, state)
    assert rule.limit() == pytest.approx(8.4)
    assert "not finite" in rule.check(float("nan"), None, last=False)
    assert "validation loss is inf" in rule.check(3.0, float("inf"), last=False)
    assert rule.check(9.0, 4.0, last=False) is None and state.over_limit == 1
    assert rule.check(4.0, 4.0, last=False) is None and state.over_limit == 0
    assert rule.check(9.0, 4.0, last=False) is None
    assert "above the divergence limit" in rule.check(1e15, 4.0, last=False)
    state.over_limit = 0
    assert "for 1 window" in rule.check(9.0, 4.0, last=True)
    assert train_lib.Divergence(64, train_lib.RunState(0, None, None, initial_loss=1.0)).limit() == \
        pytest.approx(math.log(64) + 1.0)


def test_training_curve_carries_the_diagnostics(tiny_data, tiny_train):
    """Every training-curve point holds the window means of the gradient norm and, for routed models, of every
    metric the model's loss returns (max/mean load, dropped fraction, router entropy, load per layer, ...)."""
    small = tiny_train.replace(tokens=16 * 16 * 6, eval_every=3)
    for router, experts in (("sbase", 4), ("dense", 1)):
        cfg = tiny_model(router, experts)
        rec = train_lib.train(cfg, small, tiny_data, progress=False)
        loss_fn = train_lib.make_loss_fn(cfg, jnp.float32)
        params = train_lib.step_functions(cfg, "float32", 1.0).init(jax.random.PRNGKey(0), jnp.zeros((16, 16), jnp.int32))
        _, metrics = loss_fn(params, jax.random.PRNGKey(0), jnp.zeros((16, 17), jnp.int32), True)
        want = (set(metrics) - {"lm_loss"}) | {"grad_norm", "loss", "train_loss", "step", "tokens"}
        if router == "sbase":
            assert {"max_over_mean_load", "dropped_frac", "router_entropy", "load_LE"} <= want
        assert len(rec["train_curve"]) == 2
        for point in rec["train_curve"]:
            assert set(point) == want, set(point) ^ want
            assert point["grad_norm"] > 0
        if router == "sbase":
            assert len(point["load_LE"]) == 1 and len(point["load_LE"][0]) == 4
            assert 0.0 <= point["dropped_frac"] <= 1.0 and point["max_over_mean_load"][0] >= 1.0


def test_record_paths_are_relative_to_the_repository(tiny_data, tiny_train):
    from routing_laws.io_utils import repo_root

    root = repo_root()
    data = type(tiny_data)(**vars(tiny_data))
    data.meta = dict(tiny_data.meta, corpus_path=str(root / "data" / "corpus" / "assembled"),
                     tokenizer_path="/somewhere/else/tokenizer.json")
    rec = train_lib.train(tiny_model(), tiny_train.replace(tokens=16 * 16 * 2), data, progress=False)
    assert rec["data"]["corpus_path"] == "data/corpus/assembled"
    assert rec["data"]["tokenizer_path"] == "<outside>/tokenizer.json"
    assert str(root) not in json.dumps(rec["data"])


def test_load_record_refuses_non_strict_or_inconsistent_records(tmp_path):
    good = {"record_version": train_lib.RECORD_VERSION, "status": "finished", "final_val_loss": 3.5,
            "model": train_lib.to_dict(tiny_model())}
    (tmp_path / "ok.json").write_text(json.dumps(good))
    assert train_lib.load_record(tmp_path / "ok.json")["final_val_loss"] == 3.5
    for name, text, match in [("nan", json.dumps(dict(good, final_val_loss=float("nan"))), "unreadable"),
                              ("latin", None, "unreadable"),
                              ("status", json.dumps(dict(good, status="done")), "status 'done'"),
                              ("noloss", json.dumps(dict(good, final_val_loss=None)), "final_val_loss is None"),
                              ("model", json.dumps(dict(good, model={"d_model": "x"})), "invalid model config")]:
        path = tmp_path / f"{name}.json"
        if text is None:
            path.write_bytes(json.dumps(good).encode() + "\xe9".encode("latin-1"))
        else:
            path.write_text(text)
        with pytest.raises(RoutingLawsError, match=match):
            train_lib.load_record(path)
