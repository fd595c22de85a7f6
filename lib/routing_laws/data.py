"""Tokenizer, cached token streams, train/validation split and batches for language-model training.

A corpus (the assembled composite, the committed sample, or any text file/folder) is split into
train/validation units (``corpus_text.split_train_val``), encoded once with the committed byte-level BPE,
documents joined by the end-of-text token, and cached as two uint16 arrays keyed by the corpus
content hash and the tokenizer hash, so training never re-tokenizes.

Shape glossary: N tokens in a stream, B batch size, T sequence length; a batch is int32 [B, T+1]
(inputs ``[:, :-1]``, targets ``[:, 1:]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

try:  # optional: an identical, faster encoder for whole corpora
    import tiktoken
except ImportError:  # pragma: no cover
    tiktoken = None

from routing_laws.corpus_text import VAL_FRAC, Doc, read_jsonl, split_sections, split_train_val
from routing_laws.errors import ValidationError, check_int
from routing_laws.io_utils import atomic_write_json, repo_root

EOT = "<|endoftext|>"
DEFAULT_TOKENIZER = repo_root() / "data" / "tokenizer"
DEFAULT_VOCAB_SIZE = 2048
ASSEMBLED_DIR = repo_root() / "data" / "corpus" / "assembled"
SAMPLE_DIR = repo_root() / "data" / "corpus" / "sample"
DEFAULT_CACHE = repo_root() / "data" / "tokens"
_GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_CACHE_FORMAT = 1


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-char table, as used by the byte-level pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    """The committed byte-level BPE. ``encode``/``decode`` use HF ``tokenizers``; ``encode_batch`` uses an
    identical tiktoken encoding when tiktoken is installed (about 25x faster), else HF ``encode_batch``."""

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise ValidationError("tokenizer", f"must be a path, got {path!r}")
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ValidationError("tokenizer", f"no tokenizer at {file}",
                                  "pass a folder with tokenizer.json, or run routing-laws corpus --train-tokenizer")
        self.path = file
        raw = file.read_bytes()
        self.hash = hashlib.sha256(raw).hexdigest()
        try:
            self._hf = HFTokenizer.from_str(raw.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception for any malformed file
            problem = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise ValidationError("tokenizer", f"{file} is not a tokenizer.json ({problem})",
                                  "restore data/tokenizer from git or run routing-laws corpus --train-tokenizer") from None
        self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
        self.eot_id = self._hf.token_to_id(EOT)
        if self.eot_id is None:
            raise ValidationError("tokenizer", f"{file} has no {EOT} token", "retrain with routing-laws corpus --train-tokenizer")
        self._hf.encode_special_tokens = True  # "<|endoftext|>" inside a text is plain text (as tiktoken's ordinary)
        self._tt = None

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._hf.decode(list(map(int, ids)), skip_special_tokens=False)

    def tiktoken(self):
        """An equivalent ``tiktoken.Encoding`` (ids identical to HF: merge order = id order), or None."""
        if self._tt is None:
            if tiktoken is None:
                return None
            inv = {c: b for b, c in _bytes_to_unicode().items()}
            ranks, special = {}, {}
            for tok, i in self._hf.get_vocab(with_added_tokens=True).items():
                if tok == EOT:
                    special[tok] = i
                else:
                    ranks[bytes(inv[c] for c in tok)] = i
            self._tt = tiktoken.Encoding(name=f"routing-laws-{self.hash[:8]}", pat_str=_GPT2_PAT,
                                         mergeable_ranks=ranks, special_tokens=special)
        return self._tt

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many documents as plain text (an ``<|endoftext|>`` string inside a text is not special)."""
        tt = self.tiktoken()
        if tt is not None:
            return tt.encode_ordinary_batch(texts, num_threads=max(os.cpu_count() or 1, 1))
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]


def load_tokenizer(path: str | os.PathLike | None = None) -> Tokenizer:
    """Load the committed tokenizer (``data/tokenizer``) or the one at ``path``."""
    return Tokenizer(DEFAULT_TOKENIZER if path is None else path)


def check_vocab(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Raise if a model's ``vocab_size`` differs from the tokenizer's (ids would be out of range or wasted)."""
    vocab_size = check_int("vocab_size", vocab_size, min_value=1)
    if vocab_size != tokenizer.vocab_size:
        raise ValidationError("vocab_size", f"model vocab_size={vocab_size} but tokenizer {tokenizer.path} has "
                              f"{tokenizer.vocab_size} tokens", f"set vocab_size={tokenizer.vocab_size} or pass the matching tokenizer")


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = DEFAULT_VOCAB_SIZE,
                    info: dict | None = None) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 pre-tokenization, one special ``<|endoftext|>`` token at id 0) and save
    ``tokenizer.json`` + ``meta.json`` (vocab size, ``info`` such as the training corpus hash) atomically."""
    vocab_size = check_int("vocab_size", vocab_size, min_value=257 + 1, max_value=65535)
    t0 = time.time()
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokenizer.", suffix=".json", dir=out)
    os.close(fd)
    tok.save(tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / "tokenizer.json")
    meta = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "eot": EOT, "eot_id": tok.token_to_id(EOT),
            "model": "byte-level BPE (HF tokenizers), GPT-2 pre-tokenizer regex", "train_s": round(time.time() - t0, 1),
            **(info or {})}
    atomic_write_json(out / "meta.json", meta)
    return Tokenizer(out)


# ----------------------------------------------------------------------------- corpora
@dataclass
class TokenData:
    """Token streams of one corpus: ``train``/``val`` are read-only uint16 memmaps [N]."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    eot_id: int
    meta: dict = field(default_factory=dict)


def _corpus_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "train.jsonl").is_file() and (path / "val.jsonl").is_file():
        return [path / "train.jsonl", path / "val.jsonl"]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise ValidationError("corpus", f"{path} holds no .txt files", "give a text file, a folder of .txt files, "
                              "or run routing-laws corpus")
    return files


def resolve_corpus(corpus: str | os.PathLike | None = None) -> Path:
    """``None`` -> the assembled composite if built, else the committed sample; else the given path, checked."""
    if corpus is None:
        return ASSEMBLED_DIR if (ASSEMBLED_DIR / "train.jsonl").is_file() else SAMPLE_DIR
    path = Path(corpus)
    if not path.exists():
        raise ValidationError("corpus", f"{path} does not exist", "run routing-laws corpus or pass --corpus PATH")
    return path


def read_text_file(path: Path) -> str:
    """The text of a corpus file, which must be UTF-8 and not binary (a NUL byte): never decoded with
    replacement characters, which would train on garbage without a word."""
    raw = Path(path).read_bytes()
    if b"\0" in raw[:1 << 20]:
        raise ValidationError("corpus", f"{path} is a binary file (it holds NUL bytes)", "give UTF-8 text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError("corpus", f"{path} is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})",
                              f"convert it, e.g. iconv -f latin1 -t utf-8 {path} > {Path(path).stem}.utf8.txt") from None


def read_units(path: Path) -> list[Doc]:
    """The units of an assembled JSONL split, or a clear error naming the file for a malformed one."""
    try:
        return read_jsonl(path)
    except UnicodeDecodeError as e:
        raise ValidationError("corpus", f"{path} is not UTF-8 text (byte {e.start})",
                              "rebuild it with routing-laws corpus") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValidationError("corpus", f"{path} is not a corpus JSONL file: every line must be an object with "
                              f"source, id and text ({type(e).__name__}: {str(e)[:120]})",
                              "rebuild it with routing-laws corpus") from None


def load_split(corpus: str | os.PathLike | None = None, val_frac: float | None = None) -> tuple[list[Doc], list[Doc]]:
    """Train/validation units of a corpus. An assembled folder is already split; a folder of .txt files
    (each a document, its sub-folder or file name the source) or one file (split into sections) is split here
    with validation ~``max(1.5 %, 300k chars)`` (capped at 10 %) of each source."""
    path = resolve_corpus(corpus)
    files = _corpus_files(path)
    if files[0].suffix == ".jsonl":
        return read_units(files[0]), read_units(files[1])
    docs = []
    for f in files:
        rel = f.relative_to(path) if path.is_dir() else Path(f.name)
        source = rel.parts[0] if len(rel.parts) > 1 else f.stem
        text = read_text_file(f).strip()
        if text:
            docs.append(Doc(source, str(rel), text))
    total = sum(len(d.text) for d in docs)
    if total == 0:
        raise ValidationError("corpus", f"{path} holds no text", "give a non-empty text file or folder")
    if val_frac is None:
        val_frac = min(max(VAL_FRAC, 300_000 / total), 0.1)
    if path.is_file():  # one file: cut it into sections first so the split has units to choose from
        docs = [Doc(docs[0].source, f"{docs[0].id}#{k}", s) for k, s in enumerate(split_sections(docs[0].text, 8_000))]
    return split_train_val(docs, val_frac=val_frac)


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def _content_hash(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _encode_to_file(tok: Tokenizer, docs: list[Doc], out: Path, chunk_chars: int = 4_000_000) -> int:
    """Encode documents (each followed by EOT) straight into a uint16 file via a temp file; returns tokens."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    n = 0
    try:
        with os.fdopen(fd, "wb") as f:
            i = 0
            while i < len(docs):
                j, size = i, 0
                while j < len(docs) and (size < chunk_chars or j == i):
                    size += len(docs[j].text)
                    j += 1
                for ids in tok.encode_batch([d.text for d in docs[i:j]]):
                    arr = np.asarray(ids + [tok.eot_id], dtype=np.uint16)
                    f.write(arr.tobytes())
                    n += arr.size
                i = j
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def get_dataset(corpus: str | os.PathLike | None = None, tokenizer: Tokenizer | str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, vocab_size: int | None = None) -> TokenData:
    """Token streams of ``corpus`` (see ``resolve_corpus``), encoded once and cached under ``cache_dir``
    (default ``data/tokens``), keyed by corpus content hash + tokenizer hash. ``vocab_size``, if given, must
    match the tokenizer."""
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    if vocab_size is not None:
        check_vocab(tok, vocab_size)
    if tok.vocab_size > 65536:
        raise ValidationError("tokenizer", f"vocab of {tok.vocab_size} does not fit uint16", "use a vocab <= 65536")
    path = resolve_corpus(corpus)
    files = _corpus_files(path)
    chash = _content_hash(files)
    key = hashlib.sha256(f"{_CACHE_FORMAT}:{chash}:{tok.hash}".encode()).hexdigest()[:16]
    name = "composite" if path.resolve() == ASSEMBLED_DIR.resolve() else path.stem or "corpus"
    cdir = Path(cache_dir or DEFAULT_CACHE) / f"{name}-{key}"
    meta_file = cdir / "meta.json"
    if not meta_file.is_file():
        cdir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        train_docs, val_docs = load_split(path)
        if not train_docs or not val_docs:
            raise ValidationError("corpus", f"{path} is too small to split into train and validation",
                                  "give more text (at least a few documents or ~20k characters)")
        n_train = _encode_to_file(tok, train_docs, cdir / "train.u16")
        n_val = _encode_to_file(tok, val_docs, cdir / "val.u16")
        chars = {s: sum(len(d.text) for d in part) for s, part in (("train", train_docs), ("val", val_docs))}
        atomic_write_json(meta_file, {
            "corpus": name, "corpus_path": _repo_relative(path), "corpus_hash": chash, "tokenizer_hash": tok.hash,
            "tokenizer_path": _repo_relative(tok.path), "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
            "train_chars": chars["train"], "val_chars": chars["val"], "train_tokens": n_train, "val_tokens": n_val,
            "chars_per_token": round((chars["train"] + chars["val"]) / max(n_train + n_val, 1), 4),
            "train_units": len(train_docs), "val_units": len(val_docs), "encode_s": round(time.time() - t0, 1),
            "sources": sorted({d.source for d in train_docs + val_docs})})
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        train = np.memmap(cdir / "train.u16", dtype=np.uint16, mode="r")
        val = np.memmap(cdir / "val.u16", dtype=np.uint16, mode="r")
        consistent = train.size == meta["train_tokens"] and val.size == meta["val_tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        consistent = False
    if not consistent:
        raise ValidationError("cache_dir", f"token cache {cdir} is unreadable or inconsistent with its meta.json",
                              f"delete {cdir} and rerun")
    # paths relative to the repository when inside it, so records never carry this machine's layout
    meta = dict(meta, corpus_path=_repo_relative(path), tokenizer_path=_repo_relative(tok.path))
    return TokenData(train=train, val=val, vocab_size=tok.vocab_size, eot_id=tok.eot_id, meta=meta)


# ----------------------------------------------------------------------------- batches
def _check_stream(tokens: np.ndarray, seq_len: int, batch_size: int) -> tuple[int, int]:
    if not isinstance(tokens, np.ndarray) or tokens.ndim != 1:
        raise ValidationError("tokens", "must be a 1-D numpy token stream", "pass TokenData.train or TokenData.val")
    seq_len = check_int("seq_len", seq_len, min_value=1)
    batch_size = check_int("batch_size", batch_size, min_value=1)
    if tokens.size < seq_len + 1:
        raise ValidationError("seq_len", f"seq_len={seq_len} needs {seq_len + 1} tokens but the stream has {tokens.size}",
                              "use a shorter seq_len or a larger corpus")
    return seq_len, batch_size


def train_batch(tokens: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int) -> np.ndarray:
    """int32 [B, T+1] windows at random offsets: a pure function of (seed, step), so resumed runs match."""
    seq_len, batch_size = _check_stream(tokens, seq_len, batch_size)
    step = check_int("step", step, min_value=0)
    seed = check_int("seed", seed, min_value=0)
    rng = np.random.default_rng([seed, step])
    starts_B = rng.integers(0, tokens.size - seq_len, size=batch_size)  # last start = N - T - 1
    idx_BT = starts_B[:, None] + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens[idx_BT], dtype=np.int32)


def eval_batches(tokens: np.ndarray, batch_size: int, seq_len: int, n_tokens: int) -> list[np.ndarray]:
    """Fixed int32 [B, T+1] batches covering about ``n_tokens`` targets, windows spread evenly over the
    whole stream (not one contiguous piece); windows overlap only if the stream is shorter than asked."""
    seq_len, batch_size = _check_stream(tokens, seq_len, batch_size)
    n_tokens = check_int("n_tokens", n_tokens, min_value=1)
    n_batches = max(1, -(-n_tokens // (batch_size * seq_len)))
    n_win = n_batches * batch_size
    starts = np.linspace(0, tokens.size - seq_len - 1, n_win).round().astype(np.int64)
    idx_WT = starts[:, None] + np.arange(seq_len + 1)[None, :]
    windows = np.asarray(tokens[idx_WT], dtype=np.int32)
    return [windows[b * batch_size:(b + 1) * batch_size] for b in range(n_batches)]
