"""Run records are validated, never trusted: corrupt, foreign, planted and non-UTF-8 files are reported by
name and never used; the sweep sets them aside and trains the run again; runs.csv always matches the
folder's valid records; failures make the sweep exit non-zero every time; a full disk is survived;
grid records come from clean trees. Training is replaced by a fake that returns a well-formed record
at once (the real loop is tested in test_train.py and test_sweep.py)."""

import csv
import errno
import json
import subprocess

import pytest

from routing_laws import cli, io_utils, sweep
from routing_laws import data as data_lib
from routing_laws import train as train_lib
from routing_laws.config import to_dict
from routing_laws.errors import RoutingLawsError, ValidationError

GRID = sweep.Grid("t", ("100k",), (1, 2), ("hash",), tokens=4096, batch_size=2, seq_len=16)
IDS = [s.run_id for s in GRID.runs()]  # 100k-dense-E1-..., 100k-hash-E2-...


def fake_train(mcfg, tcfg, dataset, **kw):
    """A finished record shaped like train.train's, with a loss that tells the runs apart."""
    fake_train.calls.append(kw.get("name"))
    return {"record_version": train_lib.RECORD_VERSION, "status": "finished", "model": to_dict(mcfg),
            "train": to_dict(tcfg), "final_val_loss": 4.0 + 0.1 * mcfg.router.n_experts, "tokens": tcfg.tokens,
            "accounting": {"N": 1000, "P": 2000, "F": 3000, "B": 0.66}, "curve": [{"tokens": 4096, "val_loss": 4.1}],
            "train_curve": [], "routing": {}, "wall_s": 1.0, "tokens_per_s": 100.0, "provenance": {"commit": "0" * 40}}


@pytest.fixture
def fake(monkeypatch):
    fake_train.calls = []
    monkeypatch.setattr(train_lib, "train", fake_train)
    monkeypatch.setattr(data_lib, "get_dataset", lambda corpus=None, **kw: type("D", (), {"vocab_size": 64})())
    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "0" * 40)
    return fake_train


def _csv_ids(folder):
    return sorted(r["run_id"] for r in csv.DictReader((folder / "runs.csv").open()))


def _bad_files(folder):
    return sorted(p.name for p in folder.iterdir() if ".json.bad-" in p.name)


@pytest.mark.parametrize("content", [
    b'{"run_id": "100k-hash-E2-K1-R0.5-s0", "status": "fini',  # truncated
    b"\x00\x01garbage\xff",  # binary
    "{\"run_id\": \"caf\u00e9\"}".encode("latin-1"),  # not UTF-8
    b"[1, 2, 3]",  # JSON, not an object
    b'{"run_id": "100k-hash-E2-K1-R0.5-s0", "status": "finished", "final_val_loss": NaN}',  # not strict JSON
    b"",  # empty
], ids=["truncated", "binary", "latin1", "list", "nan", "empty"])
def test_bad_record_is_set_aside_and_retrained(tmp_path, fake, content):
    sweep.run_sweep(GRID, out_dir=tmp_path, progress=False)
    victim = tmp_path / f"{IDS[1]}.json"
    victim.write_bytes(content)
    records, problems = sweep.read_records(tmp_path)
    assert len(records) == 1 and len(problems) == 1 and problems[0].startswith(victim.name)
    sweep.write_summary(tmp_path)
    assert _csv_ids(tmp_path) == [IDS[0]]  # never a row for the bad file
    fake.calls.clear()
    counts = sweep.run_sweep(GRID, out_dir=tmp_path, progress=False)
    assert counts["set_aside"] == 1 and counts["finished"] == 1 and counts["skipped"] == 1
    assert fake.calls == [IDS[1]]
    assert sweep.load_run_record(victim)["status"] == "finished"
    bad = _bad_files(tmp_path)
    assert len(bad) == 1 and (tmp_path / bad[0]).read_bytes() == content  # kept for inspection
    assert _csv_ids(tmp_path) == sorted(IDS)


def _failed(run_id, **over):
    spec = {"size": "100k", "router": "dense", "experts": 1, "top_k": 1, "routing_frequency": 0.5, "seed": 0}
    rec = {"run_id": run_id, "status": "failed", "reason": "planted", "spec": spec}
    rec.update(over)
    return rec


@pytest.mark.parametrize("name,rec", [
    ("100k-hash-E2-K1-R0.5-s0", _failed("100k-dense-E1-K1-R0.5-s0")),  # id is another run's
    ("100k-hash-E2-K1-R0.5-s0", _failed("100k-hash-E2-K1-R0.5-s0")),  # spec is another run's
    ("evil", _failed("../../etc/evil")),  # path in the id
    ("100k-dense-E1-K1-R0.5-s0", _failed("100k-dense-E1-K1-R0.5-s0", status="done")),  # unknown status
    ("100k-dense-E1-K1-R0.5-s0", _failed("100k-dense-E1-K1-R0.5-s0", reason=None)),  # failed without reason
    ("100k-dense-E1-K1-R0.5-s0", _failed("100k-dense-E1-K1-R0.5-s0", spec={"size": "100k"})),  # spec incomplete
], ids=["other-id", "other-spec", "traversal", "status", "no-reason", "short-spec"])
def test_planted_failed_records_add_no_rows(tmp_path, name, rec):
    (tmp_path / f"{name}.json").write_text(json.dumps(rec))
    records, problems = sweep.read_records(tmp_path)
    assert records == [] and len(problems) == 1 and problems[0].startswith(f"{name}.json")
    sweep.write_summary(tmp_path)
    assert _csv_ids(tmp_path) == []


def test_finished_record_schema(tmp_path, fake):
    sweep.run_sweep(GRID, out_dir=tmp_path, progress=False)
    path = tmp_path / f"{IDS[1]}.json"
    good = json.loads(path.read_text())
    assert sweep.validate_record(good, IDS[1]) is good
    for change in ({"final_val_loss": "4.2"}, {"final_val_loss": True}, {"tokens": 0}, {"record_version": 99},
                   {"accounting": {"N": 1}}, {"curve": [{"tokens": 1}]}, {"wall_s": None}, {"model": {"d_model": -1}},
                   {"model": {**good["model"], "router": {**good["model"]["router"], "n_experts": 4}}},
                   {"spec": {**good["spec"], "experts": "2"}}):
        with pytest.raises(RoutingLawsError, match=IDS[1]):
            sweep.validate_record({**good, **change}, IDS[1])
    with pytest.raises(RoutingLawsError, match="not UTF-8"):
        path.write_bytes(b'{"x": "\xe9"}')
        sweep.load_run_record(path)


def test_failures_exit_nonzero_every_time(tmp_path, fake, monkeypatch, capsys):
    def failing(mcfg, tcfg, dataset, **kw):
        if mcfg.router.routed:
            raise RoutingLawsError("training diverged at step 3")
        return fake_train(mcfg, tcfg, dataset, **kw)
    monkeypatch.setattr(train_lib, "train", failing)
    monkeypatch.setattr(sweep, "GRIDS", {"t": GRID})
    argv = ["sweep", "--grid", "t", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 1
    assert "1 failed in all" in capsys.readouterr().out
    assert cli.main(argv) == 1  # re-run: the failure is already recorded, still non-zero
    out = capsys.readouterr().out
    assert "2 already recorded" in out and "1 failed in all" in out
    rows = {r["run_id"]: r for r in csv.DictReader((tmp_path / "runs.csv").open())}
    assert rows[IDS[1]]["status"] == "failed" and "diverged" in rows[IDS[1]]["reason"]
    monkeypatch.setattr(train_lib, "train", fake_train)
    assert cli.main(argv + ["--retry-failed"]) == 0


def test_a_run_the_loop_marks_failed_is_recorded_failed(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(train_lib, "train", lambda *a, **kw: {**fake_train(*a, **kw), "status": "failed",
                                                               "reason": "validation loss exploded"})
    counts = sweep.run_sweep(GRID, out_dir=tmp_path, progress=False)
    assert counts["failed"] == 2 and counts["failed_total"] == 2
    assert all(sweep.record_status(tmp_path / f"{i}.json") == "failed" for i in IDS)


def test_full_disk_is_survived_and_reported(tmp_path, fake, monkeypatch):
    """Every record write fails with ENOSPC (the failure record's too): the sweep goes through the grid,
    reports each run, and counts them as not recorded (a real full disk needs a mount this test cannot make)."""
    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(io_utils, "atomic_write_json", full)
    logged = []
    counts = sweep.run_sweep(GRID, out_dir=tmp_path, progress=False, log=logged.append)
    assert counts["unwritten"] == 2 and counts["failed_total"] == 2 and counts["finished"] == 2
    assert len(logged) == 2 and all("disk is full" in m for m in logged)
    assert not list(tmp_path.glob("*.json"))


def test_full_disk_on_runs_csv_is_reported(tmp_path, fake, monkeypatch):
    """The records are written but runs.csv is not: said once per attempt, and the sweep is not clean."""
    def full(folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))
    monkeypatch.setattr(sweep, "write_summary", full)
    logged = []
    counts = sweep.run_sweep(GRID, out_dir=tmp_path, progress=False, log=logged.append)
    assert len(list(tmp_path.glob("*.json"))) == 2 and counts["finished"] == 2
    assert counts["unwritten"] == 3 and counts["failed_total"] == 3
    assert len(logged) == 3 and all("runs.csv" in m and "disk is full" in m for m in logged)


def test_dirty_tree_is_refused_unless_allowed(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(io_utils, "git_commit", lambda root=None: "a" * 40 + "-dirty")
    with pytest.raises(ValidationError, match="--allow-dirty"):
        sweep.run_sweep(GRID, out_dir=tmp_path, progress=False)
    assert fake.calls == [] and not list(tmp_path.glob("*.json"))
    sweep.run_sweep(GRID, out_dir=tmp_path, progress=False, allow_dirty=True)
    records, problems = sweep.read_records(tmp_path)
    assert problems == [] and all(r["dirty_tree"] for r in records)
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert {r["status"] for r in rows} == {"dirty"}  # listed, but fits only read 'finished'
    assert sweep.comparison_rows(records) == []


def test_dirty_check_in_a_real_git_repo(tmp_path):
    """io_utils.git_commit on a throwaway repository: clean, then a tracked change makes it -dirty."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
        (tmp_path / "a.txt").write_text("1")
        subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True, env=env)
        subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    assert not io_utils.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "untracked.txt").write_text("new")  # untracked files do not make a tree dirty
    assert not io_utils.git_commit(tmp_path).endswith("-dirty")
    out = tmp_path / io_utils.OUTPUT_PATHS[0] / "cpu"
    out.mkdir(parents=True)
    (out / "runs.csv").write_text("run_id\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "y"], check=True, env=env)
    (out / "runs.csv").write_text("run_id\nx\n")  # a sweep's own summary, rewritten after each run
    assert not io_utils.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "a.txt").write_text("2")
    assert io_utils.git_commit(tmp_path).endswith("-dirty")


def test_list_reports_invalid_records(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "GRIDS", {"t": GRID})
    (tmp_path / f"{IDS[0]}.json").write_text("{broken")
    assert cli.main(["sweep", "--grid", "t", "--out", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert f"{IDS[0]}" in out and "invalid" in out and "missing" in out


def test_committed_grid_records_are_valid():
    """Every record committed under data/runs/<grid>/ passes the schema (so no sweep would retrain it)."""
    root = io_utils.repo_root() / "data" / "runs"
    names = set(sweep.GRIDS) | {g.folder for g in sweep.GRIDS.values() if g.folder}
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name in names]
    assert {"cpu-v1", "routers"} <= {d.name for d in folders}
    for folder in folders:
        records, problems = sweep.read_records(folder)
        assert problems == [] and (records or not list(folder.glob("*.json"))), (folder, problems)
    assert len(sweep.read_records(root / "cpu-v1")[0]) == 33


def test_committed_v2_records_name_a_clean_commit():
    """Issue 14: a grid record names the clean commit of the code that trained it (40 hex digits, no
    '-dirty'), and no dirty-tree record is committed to a grid folder that fits read."""
    import re
    for folder in ("cpu", "ablations"):
        records, _ = sweep.read_records(io_utils.repo_root() / "data" / "runs" / folder)
        for r in records:
            assert re.fullmatch(r"[0-9a-f]{40}", r["provenance"]["commit"]), (r["run_id"], r["provenance"]["commit"])
            assert not r.get("dirty_tree"), r["run_id"]
        for path in (io_utils.repo_root() / "data" / "runs" / folder).glob("*.json"):
            assert "-dirty" not in path.read_text(), path.name  # nowhere in a record, notes included


def test_frozen_v1_records_load_only_from_their_folder(tmp_path, monkeypatch):
    """A record of version 1 (the v1 grid's) is accepted from cpu-v1/ after the version moves on, refused
    elsewhere, and a sweep never treats it as finished (it would train the run again); no sweep writes there."""
    src = io_utils.repo_root() / "data" / "runs" / "cpu-v1" / "100k-hash-E64-K1-R0.5-s0.json"
    for name in ("cpu-v1", "cpu"):
        (tmp_path / name).mkdir()
        (tmp_path / name / src.name).write_bytes(src.read_bytes())
    monkeypatch.setattr(train_lib, "RECORD_VERSION", train_lib.RECORD_VERSION + 1)
    assert sweep.load_run_record(tmp_path / "cpu-v1" / src.name)["record_version"] == 1
    with pytest.raises(RoutingLawsError, match="record_version 1"):
        sweep.load_run_record(tmp_path / "cpu" / src.name)
    assert sweep.record_status(tmp_path / "cpu-v1" / src.name) == "invalid"
    assert len(sweep.read_records(tmp_path / "cpu-v1")[0]) == 1 and sweep.read_records(tmp_path / "cpu")[1]
    with pytest.raises(ValidationError, match="--out"):
        sweep.run_sweep(GRID, out_dir=tmp_path / "cpu-v1", progress=False)


def test_router_overrides_reach_the_model_and_the_record(tmp_path, fake):
    """A per-run router setting is in the run id, the trained model's RouterConfig and the record's spec;
    a record whose model disagrees with its overrides is refused."""
    spec = sweep.RunSpec("100k", "sbase", 2, router_overrides=(("sbase_gate", "sigmoid"),))
    grid = sweep.Grid("o", (), (), (), tokens=4096, batch_size=2, seq_len=16, extra_runs=(spec,))
    assert spec.run_id == "100k-sbase-E2-K1-R0.5-s0-gsigmoid"
    sweep.run_sweep(grid, out_dir=tmp_path, progress=False)
    rec = sweep.load_run_record(tmp_path / f"{spec.run_id}.json")
    assert rec["spec"]["router_overrides"] == {"sbase_gate": "sigmoid"}
    assert rec["model"]["router"]["sbase_gate"] == "sigmoid"
    bad = {**rec, "model": {**rec["model"], "router": {**rec["model"]["router"], "sbase_gate": "softmax"}}}
    with pytest.raises(RoutingLawsError, match="does not match the spec"):
        sweep.validate_record(bad, spec.run_id)
    with pytest.raises(RoutingLawsError, match="router_overrides"):
        sweep.validate_record({**rec, "spec": {**rec["spec"], "router_overrides": {"hash_seed": 3}}}, spec.run_id)
    with pytest.raises(ValidationError, match="router_overrides"):
        sweep.RunSpec("100k", "sbase", 2, router_overrides=(("capacity_factor", 9.0),))
    plain = sweep.RunSpec("100k", "sbase", 2)
    assert "router_overrides" not in plain.to_json() and plain.run_id == "100k-sbase-E2-K1-R0.5-s0"
