"""``routing-laws train``: train one (routed) LM on a fixed token budget and write its run record."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train one model (dense or routed) on a fixed token budget; writes a JSON run record"


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from routing_laws.config import ROUTERS, SIZES

    p.add_argument("--size", default="100k", help=f"model size from the ladder: {', '.join(SIZES)} (default 100k)")
    p.add_argument("--router", default="dense", help=f"routing technique: {', '.join(ROUTERS)} (default dense)")
    p.add_argument("--experts", type=_positive_int, default=None, help="number of experts E (default 1 for dense, 16 otherwise)")
    p.add_argument("--top-k", type=_positive_int, default=1, help="experts per token K (default 1)")
    p.add_argument("--routing-frequency", type=float, default=0.5, help="fraction R of FFN layers routed (default 0.5)")
    p.add_argument("--capacity-factor", type=float, default=2.0, help="expert capacity factor (default 2.0, as in the paper)")
    p.add_argument("--dispatch-groups", type=int, default=1,
                   help="split each batch into G token groups with their own expert capacity (default 1: one "
                        "global queue); with --mesh, a multiple of the device count dispatches by all-to-all")
    p.add_argument("--tokens", type=_positive_int, default=1_000_000, help="training token budget (default 1e6)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="sequences per step (default 32)")
    p.add_argument("--seq-len", type=_positive_int, default=128, help="context length (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--seed", type=_positive_int, default=0, help="random seed (default 0)")
    p.add_argument("--vocab-size", type=_positive_int, default=None, help="must match the tokenizer (default: the tokenizer's)")
    p.add_argument("--corpus", default=None, help="text file or folder to train on (default: assembled corpus, else the committed sample)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: data/tokenizer)")
    p.add_argument("--out", default=None, help="where to write the run record JSON (default: data/runs/adhoc/<name>.json)")
    p.add_argument("--run-dir", default=None, help="checkpoint folder; rerunning with the same folder resumes")
    p.add_argument("--checkpoint-every", type=_positive_int, default=0, help="steps between checkpoints (default: only at the end)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--mesh", default=None, help="device mesh DATAxEXPERT (e.g. 2x4) or 'auto' (all devices on data); "
                   "default: one device. Multi-host: see the README's Scale-out section")


def run(args: argparse.Namespace) -> int:
    from routing_laws import data as data_lib
    from routing_laws import parallel
    from routing_laws import train as train_lib
    from routing_laws.config import RouterConfig, TrainConfig, model_config
    from routing_laws.errors import ValidationError
    from routing_laws.io_utils import repo_root

    parallel.init_distributed()
    mesh_shape = parallel.parse_mesh(args.mesh)
    mesh = parallel.make_mesh(*mesh_shape) if mesh_shape is not None else None
    experts = args.experts if args.experts is not None else (1 if args.router == "dense" else 16)
    router = RouterConfig(kind=args.router, n_experts=experts, top_k=args.top_k,
                          routing_frequency=args.routing_frequency, capacity_factor=args.capacity_factor,
                          dispatch_groups=args.dispatch_groups)
    tok = data_lib.load_tokenizer(args.tokenizer)
    vocab = args.vocab_size if args.vocab_size is not None else tok.vocab_size
    if vocab != tok.vocab_size:
        raise ValidationError("--vocab-size", f"{vocab} does not match the tokenizer's {tok.vocab_size}",
                              f"drop --vocab-size or pass --vocab-size {tok.vocab_size}")
    mcfg = model_config(args.size, vocab_size=vocab, seq_len=args.seq_len, router=router)
    tcfg = TrainConfig(tokens=args.tokens, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                       checkpoint_every=args.checkpoint_every)
    dataset = data_lib.get_dataset(args.corpus, tokenizer=args.tokenizer)
    name = f"{args.size}-{args.router}-E{experts}-K{args.top_k}-R{args.routing_frequency:g}-s{args.seed}"
    out = Path(args.out) if args.out else repo_root() / "data" / "runs" / "adhoc" / f"{name}.json"
    rec = train_lib.train(mcfg, tcfg, dataset, run_dir=args.run_dir, record_path=out,
                          progress=not args.no_progress, name=name, mesh=mesh)
    a = rec["accounting"]
    print(f"{name}: N={a['N']:,} P={a['P']:,} F={a['F']:,}/token  tokens={rec['tokens']:,}  "
          f"final val loss {rec['final_val_loss']:.4f} nats  {rec['tokens_per_s']:,.0f} tokens/s  "
          f"wall {rec['wall_s']:.1f}s")
    if rec["routing"]:
        print(f"  dropped tokens {100 * rec['routing']['dropped_frac']:.2f}%  max/mean load "
              f"{', '.join(f'{x:.2f}' for x in rec['routing']['max_over_mean_load'])}")
    print(f"record: {out}")
    return 0
