"""The CLI: bad input exits non-zero with one clear line and no traceback."""

import subprocess
import sys

import pytest

from routing_laws import cli
from routing_laws.config import ModelConfig, RouterConfig, TrainConfig


def _run(*args):
    return subprocess.run([sys.executable, "-m", "routing_laws.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["train", "--size", "huge"], "size"),
    (["train", "--tokens", "-5"], "train.tokens"),
    (["train", "--router", "magic"], "router.kind"),
    (["train", "--router", "sbase", "--experts", "0"], "router.n_experts"),
    (["train", "--vocab-size", "7"], "--vocab-size"),
    (["train", "--corpus", "/no/such/file.txt"], "corpus"),
    (["train", "--tokens", "many"], "--tokens"),
    (["sweep", "--grid", "huge"], "--grid"),
    (["sweep", "--profile", "cpu"], "--grid cpu"),  # the book's word: refused with the sweep's flag
    (["nonsense"], "invalid choice"),
])
def test_bad_input_one_line_no_traceback(args, needle):
    r = _run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("train", "sweep"):
        assert name in out


def test_train_defaults_are_the_dataclass_defaults():
    args = cli.build_parser().parse_args(["train"])
    r, t, m = RouterConfig(), TrainConfig(), ModelConfig()
    assert (args.router, args.top_k, args.routing_frequency, args.capacity_factor, args.dispatch_groups) == (
        r.kind, r.top_k, r.routing_frequency, r.capacity_factor, r.dispatch_groups)
    assert (args.tokens, args.batch_size, args.lr, args.seed, args.checkpoint_every) == (
        t.tokens, t.batch_size, t.learning_rate, t.seed, t.checkpoint_every)
    assert args.seq_len == m.seq_len


def test_whole_numbers_accept_scientific_notation():
    args = cli.build_parser().parse_args(["train", "--tokens", "2e6", "--batch-size", "1_024", "--seed", "3.0"])
    assert (args.tokens, args.batch_size, args.seed) == (2_000_000, 1024, 3)
    assert all(type(v) is int for v in (args.tokens, args.batch_size, args.seed))
