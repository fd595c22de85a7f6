"""Tests for routing_laws.corpus and corpus_text: sectioning, dedup, the stratified split, robust assembly. No network."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from routing_laws import corpus as C
from routing_laws import corpus_sources as S
from routing_laws import corpus_text as T
from routing_laws.cli import main
from routing_laws.errors import RoutingLawsError, ValidationError

WORDS = "whale ship sea captain harpoon deck mast sail wind storm island harbor rope crew night star".split()


def _prose(rng: random.Random, n_words: int, para: int = 60) -> str:
    words = [rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing"]) for _ in range(n_words)]
    paras = [" ".join(words[i:i + para]) + "." for i in range(0, n_words, para)]
    return "\n\n".join(paras)


def _synthetic(seed: int = 0) -> list[T.Doc]:
    """Three sources of very different shapes: many short docs, a few long books, one huge dictionary."""
    rng = random.Random(seed)
    docs = [T.Doc("mail", f"m{i}", _prose(rng, rng.randint(50, 400))) for i in range(300)]
    docs += [T.Doc("books", f"b{i}", _prose(rng, rng.randint(20_000, 60_000))) for i in range(6)]
    docs += [T.Doc("dict", "all", _prose(rng, 150_000, para=12))]
    return docs


def test_split_sections_reassembles_and_respects_bounds():
    rng = random.Random(1)
    text = _prose(rng, 30_000)
    parts = T.split_sections(text, 5_000)
    assert len(parts) > 10
    # the pieces are the text, cut only at paragraph breaks
    assert "\n\n".join(parts) == text
    assert all(len(p) <= 7_500 + 500 for p in parts)
    assert all(len(p) >= 2_000 for p in parts[:-1])
    assert T.split_sections("short", 5_000) == ["short"]


def test_split_sections_without_paragraphs_falls_back_to_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(3_000))
    parts = T.split_sections(text, 4_000)
    assert len(parts) > 5 and " ".join(parts) == text
    assert all(p.endswith(".") for p in parts)


def test_split_keeps_units_apart_and_source_mix():
    docs = _synthetic()
    frac = 0.02
    train, val = T.split_train_val(docs, val_frac=frac, section_chars=20_000)
    tkeys = {(d.source, d.id) for d in train}
    vkeys = {(d.source, d.id) for d in val}
    assert not tkeys & vkeys
    # every character of every document is in exactly one unit: sections reassemble the document
    for d in docs:
        units = sorted((u for u in train + val if u.source == d.source and (u.id == d.id or u.id.startswith(d.id + "#"))),
                       key=lambda u: int(u.id.split("#")[1]) if "#" in u.id else 0)
        assert "\n\n".join(u.text for u in units) == d.text
    # short documents are never cut; val text never appears inside a train unit
    assert all("#" not in u.id for u in train + val if u.source == "mail")
    train_text = {u.text for u in train}
    assert all(u.text not in train_text for u in val)
    # same source mix: every source has validation units holding about frac of its characters
    for src in ("mail", "books", "dict"):
        total = sum(len(d.text) for d in docs if d.source == src)
        v = sum(len(u.text) for u in val if u.source == src)
        assert 0.5 * frac <= v / total <= 2.0 * frac, (src, v / total)
        assert sum(u.source == src for u in val) >= 2


def test_split_is_deterministic_and_seeded():
    docs = _synthetic(3)
    a = T.split_train_val(docs, 0.02)
    b = T.split_train_val(list(reversed(docs)), 0.02)
    assert sorted(u.id for u in a[1]) == sorted(u.id for u in b[1])
    c = T.split_train_val(docs, 0.02, seed="other")
    assert sorted(u.id for u in a[1]) != sorted(u.id for u in c[1])


def test_split_rejects_bad_fraction():
    with pytest.raises(ValidationError, match="val_frac"):
        T.split_train_val(_synthetic()[:5], val_frac=0.0)


def test_dedup_drops_excerpts_exact_copies_and_known_duplicates():
    rng = random.Random(7)
    book = _prose(rng, 20_000)
    other = _prose(random.Random(8), 15_000)
    excerpt = book[len(book) // 3: 2 * len(book) // 3]
    rewrapped = re.sub(r"\s+", " ", excerpt).upper()  # flattened newlines and changed case: still a duplicate
    docs = [T.Doc("a", "excerpt", rewrapped), T.Doc("b", "book", book), T.Doc("b", "other", other),
            T.Doc("c", "copy", "  " + other.replace("\n\n", "\n") + "  "),
            T.Doc("d", "folio-hamlet", "Tragedie " + other[:1000]), T.Doc("e", "hamlet", "x")]
    kept, dropped = T.dedup(docs, book_sources={"a", "b"}, known={("d", "folio-hamlet"): ("e", "hamlet")})
    kept_ids = {d.id for d in kept}
    assert kept_ids == {"book", "other", "hamlet"}
    reasons = {d["id"]: d["reason"] for d in dropped}
    assert "contained in b/book" in reasons["excerpt"]
    assert reasons["copy"] == "exact duplicate"
    assert "same work as e/hamlet" == reasons["folio-hamlet"]
    # a known duplicate whose kept copy is absent stays
    kept2, _ = T.dedup(docs[:5], known={("d", "folio-hamlet"): ("e", "hamlet")})
    assert "folio-hamlet" in {d.id for d in kept2}


def test_shingle_containment_matches_reference():
    """The sampled-shingle estimate agrees with exact 8-gram containment on random text."""
    rng = random.Random(11)
    a = _prose(rng, 8_000).split()
    b = a[:4_000] + _prose(rng, 4_000).split()
    sa, sb = T.shingles(" ".join(a)), T.shingles(" ".join(b))
    grams = lambda w: {tuple(w[i:i + 8]) for i in range(len(w) - 7)}
    exact = len(grams(b) & grams(a)) / len(grams(b))
    assert abs(len(sb & sa) / len(sb) - exact) < 0.08


def test_clean_and_gutenberg_markers():
    raw = "junk header\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\nBody  \r\n\r\n\r\n\r\nmore\x07 text\n" \
          "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert S.clean(S.strip_gutenberg(raw)) == "Body\n\nmore text"
    assert S.strip_gutenberg("no markers") == "no markers"


def test_brown_detokeniser():
    raw = "The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, (/( yes/uh )/) ./."
    assert S._detok_brown(raw) == 'The jury said " no evidence ", (yes).'


def test_jsonl_roundtrip_is_atomic(tmp_path):
    docs = [T.Doc("s", "1", "héllo\nworld"), T.Doc("t", "2", "x")]
    sha, chars = T.write_jsonl(tmp_path / "a.jsonl", docs)
    assert T.read_jsonl(tmp_path / "a.jsonl") == docs and chars == 12 and len(sha) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]  # no temp file left behind


def _fake_sources(monkeypatch, tmp_path, fail: set[str]):
    """Two fake artifacts served from local folders; the ones in ``fail`` raise on download."""
    rng = random.Random(5)
    for name in ("good", "bad"):
        d = tmp_path / "pkgs" / name
        d.mkdir(parents=True)
        for i in range(20):
            (d / f"{i}.txt").write_text(_prose(rng, 800))
    arts = {n: C.Artifact("npm", n, "1.0") for n in ("good", "bad")}

    def download(art, dl_dir):
        if art.package in fail:
            raise RoutingLawsError("simulated network failure")
        return tmp_path / "pkgs" / art.package

    def extract(root):
        for f in sorted(root.glob("*.txt")):
            yield f.stem, f.read_text()

    monkeypatch.setattr(C, "ARTIFACTS", arts)
    monkeypatch.setattr(C, "SOURCES", (C.Source("good", "good", "prose", "PD", extract),
                                       C.Source("bad", "bad", "prose", "PD", extract)))
    monkeypatch.setattr(C, "SOURCE_NAMES", ("good", "bad"))
    monkeypatch.setattr(C, "download", download)
    monkeypatch.setattr(C, "unpack", lambda path, root: path)
    monkeypatch.setattr(C, "sha256_file", lambda path: "0" * 64)


def test_assemble_records_failures_and_goes_on(monkeypatch, tmp_path):
    _fake_sources(monkeypatch, tmp_path, fail={"bad"})
    m = C.assemble(tmp_path / "out", tmp_path / "work", val_frac=0.1, log=lambda s: None)
    assert m["failed"] == ["bad", "bad"]  # the artifact and the source fed by it
    assert m["artifacts"]["bad"]["status"] == "failed" and "simulated" in m["artifacts"]["bad"]["error"]
    assert m["sources"]["good"]["val_units"] >= 1 and m["sources"]["good"]["train_units"] >= 1
    on_disk = json.loads((tmp_path / "out" / "MANIFEST").read_text())
    assert on_disk["totals"] == m["totals"]
    train = T.read_jsonl(tmp_path / "out" / "assembled" / "train.jsonl")
    val = T.read_jsonl(tmp_path / "out" / "assembled" / "val.jsonl")
    assert sum(len(d.text) for d in train) == m["totals"]["train_chars"]
    assert {d.source for d in train + val} == {"good"}
    assert len(C.manifest_hash(tmp_path / "out" / "MANIFEST")) == 64


def test_assemble_fails_when_nothing_downloads(monkeypatch, tmp_path):
    _fake_sources(monkeypatch, tmp_path, fail={"good", "bad"})
    with pytest.raises(RoutingLawsError, match="no source"):
        C.assemble(tmp_path / "out", tmp_path / "work", log=lambda s: None)
    assert not (tmp_path / "out" / "MANIFEST").exists()


def test_assemble_rejects_unknown_source(tmp_path):
    with pytest.raises(ValidationError, match="sources"):
        C.assemble(tmp_path, tmp_path, sources=["nope"])


def test_committed_manifest_and_sample_are_consistent():
    root = Path(C.__file__).resolve().parents[2]
    m = json.loads((root / "data" / "corpus" / "MANIFEST").read_text())
    ok = [k for k, r in m["sources"].items() if r["status"] == "ok"]
    assert set(ok) <= set(C.SOURCE_NAMES) and len(ok) >= 1
    assert m["totals"]["chars"] == sum(m["sources"][k]["chars"] for k in ok)
    assert all(m["sources"][k]["val_chars"] > 0 for k in ok)
    sample = root / "data" / "corpus" / "sample"
    size = sum(p.stat().st_size for p in sample.glob("*.txt"))
    assert 1_000_000 <= size <= 2_000_000
    readme = (sample / "README.md").read_text()
    assert all(f"`{p.name}`" in readme for p in sample.glob("*.txt"))


def test_cli_corpus_reports_missing_assembly_in_one_line(tmp_path, capsys):
    rc = main(["corpus", "--out", str(tmp_path), "--skip-assembly", "--train-tokenizer"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--skip-assembly" in err and "Traceback" not in err
    assert main(["corpus", "--val-frac", "0.9", "--out", str(tmp_path)]) == 2
    assert "--val-frac" in capsys.readouterr().err


def test_cli_corpus_runs_end_to_end_on_fake_sources(monkeypatch, tmp_path, capsys):
    _fake_sources(monkeypatch, tmp_path, fail={"bad"})
    rc = main(["corpus", "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w"), "--val-frac", "0.1",
               "--train-tokenizer", "--vocab-size", "300", "--tokenizer-out", str(tmp_path / "tok")])
    out = capsys.readouterr().out
    assert rc == 0 and "failed (recorded in MANIFEST): bad, bad" in out
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["vocab_size"] == 300 and meta["chars_per_token_val"] > 1
    assert meta["corpus_manifest_hash"] == C.manifest_hash(tmp_path / "out" / "MANIFEST")
