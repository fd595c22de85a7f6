"""Writes chapters/02_training.ipynb (kept so the chapter can be regenerated and reviewed as Python)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# Training routed language models

**Overview.** This chapter trains one small model per routing technique — dense, S-BASE, RL-R and
HASH — on the same tokens, live, and draws their validation curves. It then shows the grid of runs
that `routing-laws sweep` recorded in `data/runs/`, which later chapters fit the scaling law to.

**What you need.** Nothing beyond `make book`: the runs here are sized by the book's profile
(`smoke` for tests, `cpu` for a 2-core machine, `gpu` on an accelerator). The corpus is the
assembled offline composite if `make corpus` was run, else the committed public-domain sample."""),
("code", """from routing_laws import book, charts, data, sweep, train
from routing_laws.config import RouterConfig, TrainConfig, model_config

charts.enable_offline()
P = book.profile_params(profile)
print(f"profile {P['profile']}: model {P['model_size']}, {P['train_tokens']:,} tokens per run, E = {P['n_experts']}")"""),
("md", """## The data

Training reads random windows of a tokenised stream; validation reads fixed windows spread over
held-out *documents* of every source, so the validation set has the training set's mix."""),
("code", """dataset = data.get_dataset()
m = dataset.meta
print(f"corpus: {m.get('corpus')}  train tokens {len(dataset.train):,}  validation tokens {len(dataset.val):,}  vocabulary {dataset.vocab_size}")"""),
("md", """## One run per router

Every run sees the same batches (batch *i* is a function of the seed and *i* only) and the same
budget. The routed models route every other FFN layer (R = 0.5) with top-1 routing and capacity
factor 2, as in the paper."""),
("code", """records = []
for kind in ["dense", "sbase", "rlr", "hash"]:
    experts = 1 if kind == "dense" else P["n_experts"]
    mcfg = model_config(P["model_size"], vocab_size=dataset.vocab_size,
                        router=RouterConfig(kind=kind, n_experts=experts))
    tcfg = TrainConfig(tokens=P["train_tokens"], batch_size=P["batch_size"], eval_tokens=P["eval_tokens"])
    records.append(train.train(mcfg, tcfg, dataset, progress=False, name=f"{kind} E={experts}"))

print(f"{'run':14s} {'N':>9s} {'P':>10s} {'val loss':>9s} {'tokens/s':>9s} {'dropped':>8s}")
for r in records:
    drop = r["train_curve"][-1].get("dropped_frac")  # training (capacity factor 2); evaluation drops nothing
    print(f"{r['name']:14s} {r['accounting']['N']:9,d} {r['accounting']['P']:10,d} {r['final_val_loss']:9.4f} "
          f"{r['tokens_per_s']:9,.0f} {'' if drop is None else f'{100 * drop:7.2f}%'}")"""),
("code", """rows = [{"run": r["name"], "tokens": c["tokens"], "loss": c["val_loss"]} for r in records for c in r["curve"]]
charts.loss_curve_chart(rows, title="Validation loss during training (click the legend to highlight)")"""),
("md", """At these tiny budgets the curves mostly overlap; the routing benefit the paper measures appears
with more tokens (the `cpu` sweep trains each model on 8M tokens). The dropped-token column is the
fraction of token-slots over capacity (factor 2) in the last training steps: how well each router keeps
its experts under capacity. Evaluation drops nothing by default (`eval_capacity_factor=None`), so a
token's validation loss never depends on which experts the other tokens of the batch chose."""),
("md", """## The recorded sweep

`routing-laws sweep --profile cpu` (or `make sweep PROFILE=cpu`) trains the whole grid and writes
one record per run to `data/runs/cpu/`; failed runs are recorded with their reason."""),
("code", """for name in ["cpu", "gpu", "smoke"]:
    folder = sweep.runs_dir(name)
    recs, problems = sweep.read_records(folder) if folder.exists() else ([], [])
    planned = sweep.get_profile(name).runs()
    done = [r for r in recs if r.get("status") == "finished"]
    failed = [r for r in recs if r.get("status") == "failed"]
    print(f"{name:6s}: {len(done)} of {len(planned)} planned runs finished, {len(failed)} failed"
          + (f", {len(problems)} unreadable records ignored" if problems else ""))
    for r in failed:
        print(f"        failed {r['run_id']}: {r['reason']}")
    if not recs:
        print(f"        no records yet: run `make sweep PROFILE={name}`")"""),
("md", """## Summary

- One code path trains dense and routed models; only the router configuration differs.
- A run is a pure function of its configuration and seed: resumed runs end bit-identical.
- Run records carry N, P, F, the loss curves, routing metrics and provenance.

**Read next:** the scaling-law chapters fit the paper's law to these records."""),
]
write_notebook(new_notebook(cells), "chapters/02_training.ipynb")
