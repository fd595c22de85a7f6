"""``routing-laws train``: train one (routed) LM on a fixed token budget and write its run record.

Everything is checked before training starts: the numbers (whole numbers where whole numbers are
meant, bounds from the config dataclasses, a step count optax can count and a batch that fits this
machine's memory), the corpus and tokenizer, and the output locations (``--out`` a writable file path,
``--run-dir`` a folder path). Defaults are the config dataclasses' defaults.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from routing_laws import data as data_lib
from routing_laws import parallel, plan
from routing_laws import train as train_lib
from routing_laws.commands import float_arg, int_arg
from routing_laws.config import MAX_STEPS, ROUTERS, SIZES, ModelConfig, RouterConfig, TrainConfig, model_config
from routing_laws.errors import ValidationError, check_output_path, write_error
from routing_laws.io_utils import atomic_write_json, repo_root
from routing_laws.sweep import run_id

HELP = "train one model (dense or routed) on a fixed token budget; writes a JSON run record"
DEFAULT_SIZE = "100k"
_R, _T, _M = RouterConfig(), TrainConfig(), ModelConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default=DEFAULT_SIZE, help=f"model size from the ladder: {', '.join(SIZES)} "
                   f"(default {DEFAULT_SIZE})")
    p.add_argument("--router", default=_R.kind, help=f"routing technique: {', '.join(ROUTERS)} (default {_R.kind})")
    p.add_argument("--experts", type=int_arg(), default=None, help="number of experts E (default 1 for dense, 16 otherwise)")
    p.add_argument("--top-k", type=int_arg(), default=_R.top_k, help=f"experts per token K (default {_R.top_k})")
    p.add_argument("--routing-frequency", type=float_arg(), default=_R.routing_frequency,
                   help=f"fraction R of FFN layers routed (default {_R.routing_frequency})")
    p.add_argument("--capacity-factor", type=float_arg(), default=_R.capacity_factor,
                   help=f"expert capacity factor (default {_R.capacity_factor}, as in the paper)")
    p.add_argument("--dispatch-groups", type=int_arg(), default=_R.dispatch_groups,
                   help=f"split each batch into G token groups with their own expert capacity (default "
                        f"{_R.dispatch_groups}: one global queue); with --mesh, a multiple of the device count "
                        "dispatches by all-to-all")
    p.add_argument("--tokens", type=int_arg(), default=_T.tokens, help=f"training token budget (default {_T.tokens:.0e})")
    p.add_argument("--batch-size", type=int_arg(), default=_T.batch_size, help=f"sequences per step (default {_T.batch_size})")
    p.add_argument("--seq-len", type=int_arg(), default=_M.seq_len, help=f"context length (default {_M.seq_len})")
    p.add_argument("--lr", type=float_arg(), default=_T.learning_rate, help=f"peak learning rate (default {_T.learning_rate:g})")
    p.add_argument("--seed", type=int_arg(), default=_T.seed, help=f"random seed, a whole number (default {_T.seed})")
    p.add_argument("--vocab-size", type=int_arg(), default=None, help="must match the tokenizer (default: the tokenizer's)")
    p.add_argument("--corpus", default=None, help="UTF-8 text file or folder to train on (default: assembled corpus, "
                   "else the committed sample)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: data/tokenizer)")
    p.add_argument("--out", default=None, help="where to write the run record JSON (default: data/runs/adhoc/<run id>.json)")
    p.add_argument("--run-dir", default=None, help="checkpoint folder; rerunning with the same folder resumes")
    p.add_argument("--checkpoint-every", type=int_arg(), default=_T.checkpoint_every,
                   help="steps between checkpoints (default: only at the end)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--mesh", default=None, help="device mesh DATAxEXPERT (e.g. 2x4) or 'auto' (all devices on data); "
                   "default: one device. Multi-host: see the README's Scale-out section")


def run(args: argparse.Namespace) -> int:
    mesh_shape = parallel.parse_mesh(args.mesh)
    experts = args.experts if args.experts is not None else (1 if args.router == "dense" else 16)
    router = RouterConfig(kind=args.router, n_experts=experts, top_k=args.top_k,
                          routing_frequency=args.routing_frequency, capacity_factor=args.capacity_factor,
                          dispatch_groups=args.dispatch_groups)
    tcfg = TrainConfig(tokens=args.tokens, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                       checkpoint_every=args.checkpoint_every)
    name = run_id(args.size, args.router, experts, args.top_k, args.routing_frequency, args.seed)
    out = check_output_path("--out", Path(args.out) if args.out else repo_root() / "data" / "runs" / "adhoc" / f"{name}.json")
    if args.run_dir is not None:
        check_output_path("--run-dir", args.run_dir, is_dir=True)
    tok = data_lib.load_tokenizer(args.tokenizer)
    vocab = args.vocab_size if args.vocab_size is not None else tok.vocab_size
    if vocab != tok.vocab_size:
        raise ValidationError("--vocab-size", f"{vocab} does not match the tokenizer's {tok.vocab_size}",
                              f"drop --vocab-size or pass --vocab-size {tok.vocab_size}")
    mcfg = model_config(args.size, vocab_size=vocab, seq_len=args.seq_len, router=router)
    steps = math.ceil(tcfg.tokens / (tcfg.batch_size * mcfg.seq_len))
    if steps > MAX_STEPS:
        raise ValidationError("--tokens", f"{tcfg.tokens:.3g} tokens take {steps:.3g} steps of {tcfg.batch_size} x "
                              f"{mcfg.seq_len}; the optimizer counts at most {MAX_STEPS:,}",
                              "use fewer --tokens or a larger --batch-size")
    plan.check_step_memory("--batch-size", mcfg, tcfg.batch_size)
    dataset = data_lib.get_dataset(args.corpus, tokenizer=tok)
    parallel.init_distributed()
    mesh = parallel.make_mesh(*mesh_shape) if mesh_shape is not None else None
    rec = train_lib.train(mcfg, tcfg, dataset, run_dir=args.run_dir, progress=not args.no_progress, name=name,
                          mesh=mesh)
    rec.update(run_id=name, spec={"size": args.size, "router": args.router, "experts": experts, "top_k": args.top_k,
                                  "routing_frequency": args.routing_frequency, "seed": args.seed})
    try:
        atomic_write_json(out, rec)
    except OSError as e:
        raise write_error("--out", out, e) from None
    if rec.get("status") != "finished":
        reason = rec.get("reason") or (rec.get("failure") or {}).get("reason", "")
        print(f"{name}: {rec.get('status')}: {reason}\nrecord: {out}")
        return 1
    a = rec["accounting"]
    print(f"{name}: N={a['N']:,} P={a['P']:,} F={a['F']:,}/token  tokens={rec['tokens']:,}  "
          f"final val loss {rec['final_val_loss']:.4f} nats  {rec['tokens_per_s'] or float('nan'):,.0f} tokens/s  "
          f"wall {rec['wall_s']:.1f}s")
    if rec["routing"]:
        print(f"  dropped tokens {100 * rec['routing']['dropped_frac']:.2f}%  max/mean load "
              f"{', '.join(f'{x:.2f}' for x in rec['routing']['max_over_mean_load'])}")
    print(f"record: {out}")
    return 0
