import pytest

from routing_laws.config import SIZES, ModelConfig, RouterConfig, TrainConfig, model_config, model_from_dict, to_dict
from routing_laws.errors import ValidationError


def test_every_size_builds_and_roundtrips():
    for name in SIZES:
        cfg = model_config(name, router=RouterConfig(kind="sbase", n_experts=8))
        assert model_from_dict(to_dict(cfg)) == cfg


def test_routed_layers_every_other():
    cfg = model_config("800k", router=RouterConfig(kind="hash", n_experts=4))
    assert cfg.routed_layers == (1, 3)
    cfg = model_config("800k", router=RouterConfig(kind="hash", n_experts=4, routing_frequency=1.0))
    assert cfg.routed_layers == (0, 1, 2, 3)
    cfg = model_config("800k", router=RouterConfig(kind="hash", n_experts=4, routing_frequency=0.25))
    assert cfg.routed_layers == (3,)
    assert model_config("800k").routed_layers == ()
    cfg = model_config("paper-370M", router=RouterConfig(kind="sbase", n_experts=8, routing_frequency=1 / 12))
    assert cfg.routed_layers == (11,)


@pytest.mark.parametrize("kw,field", [
    (dict(kind="nope"), "router.kind"),
    (dict(kind="sbase", n_experts=0), "router.n_experts"),
    (dict(kind="sbase", n_experts=2, top_k=3), "router.top_k"),
    (dict(kind="sbase", n_experts=2, capacity_factor=0), "router.capacity_factor"),
    (dict(kind="sbase", n_experts=2, routing_frequency=0), "router.routing_frequency"),
    (dict(kind="sbase", n_experts=2, routing_frequency=1.5), "router.routing_frequency"),
    (dict(kind="dense", n_experts=4), "router.n_experts"),
    (dict(kind="hash", n_experts=4, top_k=2), "router.top_k"),
    (dict(kind="rlr", n_experts=4, rlr_router_lr_mult=0.0), "router.rlr_router_lr_mult"),
    (dict(kind="rlr", n_experts=4, rlr_detach_input="yes"), "router.rlr_detach_input"),
])
def test_router_config_errors_name_the_field(kw, field):
    with pytest.raises(ValidationError) as e:
        RouterConfig(**kw)
    assert e.value.field == field and field in str(e.value)


def test_model_and_train_errors():
    with pytest.raises(ValidationError, match="size"):
        model_config("huge")
    with pytest.raises(ValidationError, match="routing_frequency"):
        model_config("100k", router=RouterConfig(kind="sbase", n_experts=2, routing_frequency=0.25))
    with pytest.raises(ValidationError, match="train.tokens"):
        TrainConfig(tokens=-5)
    with pytest.raises(ValidationError, match="train.learning_rate"):
        TrainConfig(learning_rate=float("nan"))
    with pytest.raises(ValidationError, match="model.d_model"):
        ModelConfig(d_model=2.5)
