"""Every bad input is a clear error before any work: exit 2, one message naming the field, no traceback.

The CLI cases run ``routing_laws.cli.main`` in-process (argparse's own errors raise SystemExit(2)); a few
run in a subprocess to check what a shell user sees. Each case is chosen so that accepting the input
would start training, fitting or benchmarking: a case that passed validation by mistake would show as
a wrong exit code, not as a silent success. The API cases call the config dataclasses and data loaders.
"""

import subprocess
import sys

import numpy as np
import pytest

from routing_laws import cli, data, io_utils
from routing_laws.config import ModelConfig, RouterConfig, TrainConfig
from routing_laws.errors import ValidationError, check_float, check_int, check_output_path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "latin1.txt").write_bytes("Caf\u00e9 na\u00efve r\u00e9sum\u00e9. ".encode("latin-1") * 2000)
    (d / "binary.bin").write_bytes(bytes(range(256)) * 400)
    (d / "garbage.json").write_text("{this is not a tokenizer")
    (d / "empty.json").write_text("")
    (d / "jsonl").mkdir()
    (d / "jsonl" / "train.jsonl").write_text("not json at all\n")
    (d / "jsonl" / "val.jsonl").write_text('{"source": "x"}\n')
    (d / "a_file").write_text("x")
    (d / "a_dir").mkdir()
    (d / "empty_dir").mkdir()
    (d / "binary.csv").write_bytes(b"\x00\xff\xfe" * 100)
    (d / "ragged.csv").write_text("N,E,loss\n1e6,1,3.5\n2e6,1\n")
    (d / "header.csv").write_text("N,E,loss\n")
    return {k: str(d / v) for k, v in {"latin1": "latin1.txt", "binary": "binary.bin", "garbage": "garbage.json",
                                        "empty": "empty.json", "jsonl": "jsonl", "file": "a_file", "dir": "a_dir",
                                        "empty_dir": "empty_dir", "binary_csv": "binary.csv",
                                        "ragged_csv": "ragged.csv", "header_csv": "header.csv"}.items()}


CLI_CASES = [
    # train: numbers
    (["train", "--size", "huge"], "size"),
    (["train", "--tokens", "-5"], "train.tokens"),
    (["train", "--tokens", "many"], "--tokens"),
    (["train", "--tokens", "1e400"], "train.tokens"),
    (["train", "--tokens", "1e15"], "train.tokens"),
    (["train", "--tokens", "1e13", "--batch-size", "1"], "--tokens"),  # more steps than optax counts
    (["train", "--batch-size", "1e9"], "--batch-size"),
    (["train", "--batch-size", "0"], "train.batch_size"),
    (["train", "--seed", "1.5e0"], "--seed"),
    (["train", "--seed", "-1"], "train.seed"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "0"], "train.learning_rate"),
    (["train", "--experts", "1.5", "--router", "sbase"], "--experts"),
    (["train", "--seq-len", "1"], "model.seq_len"),
    (["train", "--checkpoint-every", "-1"], "train.checkpoint_every"),
    (["train", "--vocab-size", "7"], "--vocab-size"),
    # train: routing
    (["train", "--router", "magic"], "router.kind"),
    (["train", "--router", "sbase", "--experts", "0"], "router.n_experts"),
    (["train", "--router", "dense", "--experts", "4"], "router.n_experts"),
    (["train", "--router", "sbase", "--routing-frequency", "0.3"], "router.routing_frequency"),
    (["train", "--router", "sbase", "--capacity-factor", "0"], "router.capacity_factor"),
    (["train", "--router", "sbase", "--experts", "2", "--top-k", "3"], "router.top_k"),
    (["train", "--router", "hash", "--top-k", "2"], "router.top_k"),
    (["train", "--dispatch-groups", "0"], "router.dispatch_groups"),
    (["train", "--mesh", "0x1"], "--mesh"),
    (["train", "--mesh", "wide"], "--mesh"),
    # train: files and output locations
    (["train", "--corpus", "/no/such/file.txt"], "corpus"),
    (["train", "--corpus", "{latin1}"], "corpus"),
    (["train", "--corpus", "{binary}"], "corpus"),
    (["train", "--corpus", "{jsonl}"], "corpus"),
    (["train", "--corpus", "{empty_dir}"], "corpus"),
    (["train", "--tokenizer", "{garbage}"], "tokenizer"),
    (["train", "--tokenizer", "{empty}"], "tokenizer"),
    (["train", "--tokenizer", "/no/such/tokenizer.json"], "tokenizer"),
    (["train", "--out", "{dir}"], "--out"),
    (["train", "--out", "{file}/x.json"], "--out"),
    (["train", "--out", "/proc/routing-laws-test.json"], "--out"),
    (["train", "--run-dir", "{file}"], "--run-dir"),
    # sweep
    (["sweep", "--grid", "huge"], "--grid"),
    (["sweep", "--profile", "cpu"], "--profile"),
    (["sweep", "--shard", "3/3"], "--shard"),
    (["sweep", "--shard", "a/b"], "--shard"),
    (["sweep", "--only", "nothing-like-this"], "--only"),
    (["sweep", "--out", "{file}"], "--out"),
    (["sweep", "--out", "{file}/records"], "--out"),
    (["sweep", "--corpus", "/no/such/corpus"], "corpus"),
    (["sweep", "--grid", "huge", "--plan"], "--grid"),
    # corpus
    (["corpus", "--val-frac", "0.9"], "--val-frac"),
    (["corpus", "--val-frac", "nan"], "--val-frac"),
    (["corpus", "--vocab-size", "10"], "--vocab-size"),
    (["corpus", "--vocab-size", "2.5"], "--vocab-size"),
    (["corpus", "--out", "{file}"], "--out"),
    (["corpus", "--skip-assembly", "--out", "{empty_dir}"], "--skip-assembly"),
    (["corpus", "--sources", "nosuch"], "--sources"),
    # fit, bench, book (their own modules; the cases that pass today)
    (["fit", "/no/such/runs.csv"], "runs.csv"),
    (["fit", "{ragged_csv}", "--bootstrap", "-1"], "--bootstrap"),
    (["bench", "layer", "--e", "0"], "--e"),
    (["bench", "nothing"], "invalid choice"),
    (["bench", "layer", "--tokens", "0"], "--tokens"),
    (["bench", "layer", "--tokens", "1e400"], "--tokens"),
    (["bench", "layer", "--max-param-gb", "-1"], "--max-param-gb"),
    (["bench", "layer", "--capacity-factor", "nan"], "--capacity-factor"),
    (["bench", "layer", "--out", "{empty_dir}"], "--out"),
    (["bench", "train", "--out", "{file}/x.json"], "--out"),
    (["bench", "train", "--repeats", "1.5"], "--repeats"),
    (["bench", "train", "--batch", "1e9"], "--batch"),
    (["bench", "train", "--sizes", "nope"], "size"),
    (["bench", "train", "--steps", "0"], "--steps"),
    (["book", "--profile", "huge"], "--profile"),
    (["nonsense"], "invalid choice"),
]


def _main(argv):
    try:
        return cli.main(argv)
    except SystemExit as e:  # argparse's errors
        return e.code


@pytest.mark.parametrize("argv,needle", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_bad_input(argv, needle, files, capsys, monkeypatch):
    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "0" * 40)  # a clean tree for sweep cases
    argv = [a.format(**files) for a in argv]
    code = _main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "Traceback" not in text
    assert needle in out.err, out.err
    assert len(out.err.strip().splitlines()) == 1, out.err


def test_sweep_refuses_a_dirty_tree(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "0" * 40 + "-dirty")
    assert _main(["sweep", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--allow-dirty" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_output_check_before_work_on_a_read_only_location(monkeypatch, tmp_path):
    """A location where no file can be created (read-only mount; simulated: root ignores permission bits)."""
    def refuse(*a, **kw):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(ValidationError, match="--out.*Read-only"):
        check_output_path("--out", tmp_path / "x.json")


@pytest.mark.parametrize("argv,needle", [
    (["train", "--tokens", "1e400"], "train.tokens"),
    (["train", "--seed", "1.5e0"], "--seed"),
    (["sweep", "--profile", "gpu"], "--grid gpu"),
])
def test_cli_bad_input_in_a_shell(argv, needle):
    r = subprocess.run([sys.executable, "-m", "routing_laws.cli", *argv], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr


# ----------------------------------------------------------------------------- API cases
@pytest.mark.parametrize("make,field", [
    (lambda: RouterConfig(kind="sbase", n_experts=True), "router.n_experts"),
    (lambda: RouterConfig(kind="sbase", n_experts=2.5), "router.n_experts"),
    (lambda: RouterConfig(kind="sbase", n_experts="many"), "router.n_experts"),
    (lambda: RouterConfig(kind="sbase", n_experts=4, routing_frequency="half"), "router.routing_frequency"),
    (lambda: RouterConfig(kind="sbase", n_experts=4, capacity_factor=float("inf")), "router.capacity_factor"),
    (lambda: RouterConfig(kind="sbase", n_experts=4, capacity_factor=True), "router.capacity_factor"),
    (lambda: RouterConfig(kind="sbase", n_experts=4, sbase_balanced_eval="yes"), "router.sbase_balanced_eval"),
    (lambda: RouterConfig(kind=["sbase"]), "router.kind"),
    (lambda: ModelConfig(d_model="wide"), "model.d_model"),
    (lambda: ModelConfig(n_layers=None), "model.n_layers"),
    (lambda: ModelConfig(router={"kind": "sbase"}), "model.router"),
    (lambda: TrainConfig(tokens=10**400), "train.tokens"),
    (lambda: TrainConfig(seed=1.5), "train.seed"),
    (lambda: TrainConfig(seed=2**40), "train.seed"),
    (lambda: TrainConfig(learning_rate="fast"), "train.learning_rate"),
    (lambda: TrainConfig(batch_size=False), "train.batch_size"),
    (lambda: TrainConfig(compute_dtype="float8"), "train.compute_dtype"),
])
def test_config_bad_input(make, field):
    with pytest.raises(ValidationError) as e:
        make()
    assert e.value.field == field


def test_config_coerces_numeric_strings_and_whole_floats():
    r = RouterConfig(kind="sbase", n_experts="4", routing_frequency="0.5", capacity_factor="2")
    assert (r.n_experts, r.routing_frequency, r.capacity_factor) == (4, 0.5, 2.0)
    assert type(r.n_experts) is int and type(r.capacity_factor) is float
    t = TrainConfig(tokens=1e6, seed=np.int64(3))
    assert t.tokens == 1_000_000 and type(t.tokens) is int and type(t.seed) is int
    assert r == RouterConfig(kind="sbase", n_experts=4, routing_frequency=0.5, capacity_factor=2.0)


@pytest.mark.parametrize("fn,value", [
    (check_int, True), (check_int, 1.5), (check_int, "1.5"), (check_int, "abc"), (check_int, float("nan")),
    (check_int, float("inf")), (check_int, None), (check_int, "1e400x"),
    (check_float, True), (check_float, "nan"), (check_float, "1e400"), (check_float, "x"), (check_float, None),
    (check_float, [1.0]),
])
def test_checkers_refuse_with_the_field_name(fn, value):
    with pytest.raises(ValidationError, match="^the_field: "):
        fn("the_field", value)


@pytest.mark.parametrize("key", ["latin1", "binary", "jsonl", "empty_dir"])
def test_data_loaders_refuse_bad_corpora(files, key):
    with pytest.raises(ValidationError) as e:
        data.load_split(files[key])
    assert e.value.field == "corpus" and (key == "empty_dir" or files[key].split("/")[-1] in str(e.value))


@pytest.mark.parametrize("key", ["garbage", "empty", "binary", "dir"])
def test_tokenizer_loader_refuses_bad_files(files, key):
    with pytest.raises(ValidationError) as e:
        data.load_tokenizer(files[key])
    assert e.value.field == "tokenizer"
