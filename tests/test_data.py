"""Tests for routing_laws.data: tokenizer, token cache, split of user corpora, batches. No network."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from routing_laws import data as D
from routing_laws.errors import ValidationError

SAMPLE = D.SAMPLE_DIR
TEXTS = ["Call me Ishmael. Some years ago—never mind how long precisely—",
         "Alice was beginning to get very tired of sitting by her sister.\n\n  Tabs\tand   spaces  ",
         "Ünïcödé: naïve café, 日本語, emoji 🐋, digits 1234567890, <|endoftext|> as text.", ""]


@pytest.fixture(scope="module")
def tok():
    return D.load_tokenizer()


def _folder(tmp_path: Path, n_docs: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = (SAMPLE / "alice.txt").read_text().split()
    root = tmp_path / "corpus"
    for src in ("fiction", "news"):
        (root / src).mkdir(parents=True)
        for i in range(n_docs // 2):
            start = rng.randrange(len(words) - 2_000)
            (root / src / f"{i:03d}.txt").write_text(" ".join(words[start:start + rng.randint(300, 1_500)]))
    return root


def test_committed_tokenizer_matches_config_and_meta(tok):
    from routing_laws.config import ModelConfig

    meta = json.loads((D.DEFAULT_TOKENIZER / "meta.json").read_text())
    assert tok.vocab_size == ModelConfig().vocab_size == D.DEFAULT_VOCAB_SIZE == meta["vocab_size"]
    assert tok.eot_id == meta["eot_id"] == 0
    assert tok.decode([tok.eot_id]) == D.EOT


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_roundtrip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.eot_id not in ids  # the EOT string inside a text is plain text, never the separator


def test_fast_batch_encoding_matches_hf(tok):
    text = (SAMPLE / "moby_dick.txt").read_text()[:200_000]
    chunks = [text[i:i + 5_000] for i in range(0, len(text), 5_000)] + TEXTS
    assert tok.encode_batch(chunks) == [tok.encode(c) for c in chunks]


def test_hf_fallback_matches_fast_path(tok, monkeypatch):
    fast = tok.encode_batch(TEXTS)
    monkeypatch.setattr(tok, "tiktoken", lambda: None)
    assert tok.encode_batch(TEXTS) == fast == [tok.encode(t) for t in TEXTS]


def test_train_tokenizer_small(tmp_path):
    text = (SAMPLE / "alice.txt").read_text()
    t = D.train_tokenizer([text[:60_000], text[60_000:]], tmp_path / "tok", vocab_size=400, info={"corpus": "alice"})
    assert t.vocab_size == 400 and t.eot_id == 0
    assert t.decode(t.encode(text[:5_000])) == text[:5_000]
    assert t.encode_batch([text[:3_000]]) == [t.encode(text[:3_000])]
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["vocab_size"] == 400 and meta["corpus"] == "alice"
    with pytest.raises(ValidationError, match="vocab_size"):
        D.train_tokenizer([text], tmp_path / "bad", vocab_size=100)


def test_dataset_stream_matches_reference_and_cache_is_reused(tmp_path, tok, monkeypatch):
    root = _folder(tmp_path)
    calls = []
    real = D._encode_to_file
    monkeypatch.setattr(D, "_encode_to_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = D.get_dataset(root, tok, cache_dir=tmp_path / "cache", vocab_size=tok.vocab_size)
    assert ds.train.dtype == np.uint16 and ds.val.dtype == np.uint16 and len(calls) == 2
    # reference: per-document slow encoding, each followed by EOT, in split order
    train_docs, val_docs = D.load_split(root)
    for stream, docs in ((ds.train, train_docs), (ds.val, val_docs)):
        ref = [i for d in docs for i in tok.encode(d.text) + [tok.eot_id]]
        assert np.array_equal(np.asarray(stream), np.asarray(ref, dtype=np.uint16))
    assert ds.meta["train_tokens"] == ds.train.size and ds.meta["sources"] == ["fiction", "news"]
    assert {d.source for d in val_docs} == {"fiction", "news"}
    # second call: served from the cache, no encoding
    ds2 = D.get_dataset(root, tok, cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and np.array_equal(ds2.train, ds.train)
    # changed corpus -> new key, re-encoded
    (root / "news" / "000.txt").write_text("A different first news document.")
    ds3 = D.get_dataset(root, tok, cache_dir=tmp_path / "cache")
    assert len(calls) == 4 and ds3.meta["corpus_hash"] != ds.meta["corpus_hash"]
    assert len(list((tmp_path / "cache").iterdir())) == 2
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_single_file_corpus_is_split_into_sections(tmp_path, tok):
    f = tmp_path / "book.txt"
    f.write_text((SAMPLE / "alice.txt").read_text())
    train, val = D.load_split(f)
    assert len(train) > 5 and len(val) >= 1
    assert not {d.id for d in train} & {d.id for d in val}
    ds = D.get_dataset(f, tok, cache_dir=tmp_path / "c")
    assert ds.val.size > 1_000 and ds.meta["corpus"] == "book"


def test_default_corpus_falls_back_to_sample(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "ASSEMBLED_DIR", tmp_path / "missing")
    assert D.resolve_corpus(None) == D.SAMPLE_DIR
    train, val = D.load_split(None)
    assert {d.source for d in val} == {"moby_dick", "alice"}
    assert 0.05 < sum(len(d.text) for d in val) / sum(len(d.text) for d in train + val) < 0.15


def test_bad_inputs_name_the_fix(tmp_path, tok):
    with pytest.raises(ValidationError, match=r"corpus: .*does not exist.*routing-laws corpus or pass --corpus PATH"):
        D.get_dataset(tmp_path / "nope", tok, cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="no .txt files"):
        D.get_dataset(tmp_path / "empty", tok, cache_dir=tmp_path)
    with pytest.raises(ValidationError, match=r"vocab_size.*set vocab_size=2048"):
        D.get_dataset(SAMPLE, tok, cache_dir=tmp_path, vocab_size=4096)
    with pytest.raises(ValidationError, match="tokenizer"):
        D.load_tokenizer(tmp_path)


def test_train_batch_deterministic_contiguous_in_range():
    tokens = np.arange(10_000, dtype=np.uint16)
    b = D.train_batch(tokens, step=3, batch_size=8, seq_len=16, seed=1)
    assert b.shape == (8, 17) and b.dtype == np.int32
    assert np.array_equal(b, D.train_batch(tokens, 3, 8, 16, 1))
    assert not np.array_equal(b, D.train_batch(tokens, 4, 8, 16, 1))
    assert not np.array_equal(b, D.train_batch(tokens, 3, 8, 16, 2))
    assert np.all(np.diff(b, axis=1) == 1)  # every row is a contiguous window
    starts = np.concatenate([D.train_batch(tokens, s, 64, 16, 0)[:, 0] for s in range(50)])
    assert starts.min() >= 0 and starts.max() <= tokens.size - 17
    assert starts.min() < 500 and starts.max() > tokens.size - 600  # covers the whole stream
    tiny = np.arange(17, dtype=np.uint16)
    assert np.array_equal(D.train_batch(tiny, 0, 2, 16, 0), np.stack([tiny, tiny]).astype(np.int32))


def test_eval_batches_spread_evenly():
    tokens = np.arange(50_000, dtype=np.uint16)
    bs = D.eval_batches(tokens, batch_size=4, seq_len=32, n_tokens=1_000)
    assert len(bs) == 8 and all(b.shape == (4, 33) and b.dtype == np.int32 for b in bs)
    starts = np.concatenate([b[:, 0] for b in bs])
    assert starts[0] == 0 and starts[-1] == tokens.size - 33
    gaps = np.diff(starts)
    assert gaps.min() >= gaps.max() - 1  # even spacing
    again = D.eval_batches(tokens, 4, 32, 1_000)
    assert all(np.array_equal(x, y) for x, y in zip(bs, again))
    short = D.eval_batches(np.arange(100, dtype=np.uint16), 2, 32, 10_000)  # more than the stream: overlaps
    assert sum(b.shape[0] for b in short) * 32 >= 10_000 and max(b.max() for b in short) == 99


def test_batch_validation():
    tokens = np.arange(20, dtype=np.uint16)
    with pytest.raises(ValidationError, match="seq_len"):
        D.train_batch(tokens, 0, 2, 20, 0)
    with pytest.raises(ValidationError, match="step"):
        D.train_batch(tokens, -1, 2, 8, 0)
    with pytest.raises(ValidationError, match="tokens"):
        D.eval_batches(tokens.reshape(4, 5), 2, 2, 10)
    with pytest.raises(ValidationError, match="n_tokens"):
        D.eval_batches(tokens, 2, 4, 0)
