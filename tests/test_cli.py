"""The CLI: bad input exits non-zero with one clear line and no traceback."""

import subprocess
import sys

import pytest

from routing_laws import cli


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
    (["sweep", "--profile", "huge"], "profile"),
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
