"""Writes chapters/08_scale.ipynb (kept so the chapter can be regenerated and reviewed as Python)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# Running at scale

**Overview.** Everything in this book runs on a laptop at small sizes; the same code runs bigger on
a GPU or TPU. This chapter lists the profiles that size the book and the sweep, shows how to install
an accelerator build of JAX, how to execute the book in batch with papermill, and how to split a
sweep over several machines and merge the results.

**What you need.** Nothing to read it. To run at scale: a machine with a CUDA GPU or a TPU, and this
repository's `.venv` (`make venv` or `make book` creates it)."""),
("code", """from routing_laws import book, charts, sweep
from routing_laws.config import model_config
from routing_laws.model import count_params

charts.enable_offline()
P = book.profile_params(profile)
print(f"this page was executed under profile {P['profile']} (asked for: {P['requested']})")"""),
("md", """## Profiles

Two tables size everything. `routing_laws.book.PROFILES` sizes what each *chapter* computes live
(papermill injects the chosen profile into every chapter's `parameters` cell);
`routing_laws.sweep.PROFILES` defines each *sweep* grid whose records the scaling-law chapters fit."""),
("code", """knobs = [k for k in book.PROFILES["cpu"] if k != "profile"]
print(f"{'book profile':13s}" + "".join(f"{k:>14s}" for k in knobs))
for name, p in book.PROFILES.items():
    if name == "auto":
        print(f"{'auto':13s}  -> gpu when JAX sees a GPU/TPU, else cpu ($ROUTING_LAWS_PROFILE overrides)")
        continue
    print(f"{name:13s}" + "".join(f"{p[k]:>14,}" if isinstance(p[k], int) else f"{p[k]:>14s}" for k in knobs))"""),
("code", """print(f"{'sweep':8s} {'sizes':24s} {'experts E':28s} {'routers':15s} {'tokens/run':>11s} {'batch x seq':>11s} {'runs':>5s}")
for name, prof in sweep.PROFILES.items():
    print(f"{name:8s} {','.join(prof.sizes):24s} {','.join(map(str, prof.experts)):28s} {','.join(prof.routers):15s} "
          f"{prof.tokens:>11,} {prof.batch_size:>5d} x {prof.seq_len:<4d} {len(prof.runs()):>5d}")"""),
("md", """The chart counts the runs of one grid per model size and router: the dense baseline once per
size, each router once per expert count E > 1, plus the (K, R) variants for the (F, B) law. Hover a
bar for its count; click a legend entry to highlight a router."""),
("code", """grid_name = "gpu" if P["profile"] == "gpu" else "cpu"
grid = sweep.get_profile(grid_name)
counts = {}
for spec in grid.runs():
    counts[(spec.size, spec.router)] = counts.get((spec.size, spec.router), 0) + 1
bars = [{"size": f"{size} (N = {count_params(model_config(size)).N:,})", "router": router, "runs": n}
        for (size, router), n in counts.items()]
charts.grouped_bar_chart(bars, x="size", y="runs", group="router", x_title="model size (dense non-embedding N)",
                         y_title="runs in the grid (count)", group_title="router", y_format="d",
                         title=f"The {grid_name} sweep grid: {len(grid.runs())} runs")"""),
("md", """## GPU and TPU

The `.venv` has the CPU build of JAX. On an accelerator machine install the matching build into the
same environment, then check that JAX sees the device:

```bash
.venv/bin/pip install -U "jax[cuda12]"          # NVIDIA GPU (CUDA 12 wheels)
.venv/bin/pip install -U "jax[tpu]"             # Cloud TPU VM
.venv/bin/python -c "import jax; print(jax.default_backend(), jax.devices())"
```

Nothing else changes: training computes in **bfloat16** automatically when the backend is a GPU or
TPU (parameters, optimizer state and the router's math stay float32; `TrainConfig.compute_dtype`
overrides), `routing-laws bench layer` switches to bf16 and 16,384-token batches, and chapters whose
parameters say `profile = "auto"` pick the `gpu` profile by themselves."""),
("md", """## Executing the book in batch

`routing-laws book` runs every chapter with papermill under one profile, stages the executed copies in
`book/executed/` and builds the HTML book:

```bash
.venv/bin/routing-laws book --profile gpu                      # every chapter, then the build
.venv/bin/routing-laws book --profile gpu --only 07_performance --no-build
.venv/bin/routing-laws book --no-execute                       # rebuild HTML from the staged notebooks
```

One chapter by hand with the papermill CLI (run it from `chapters/`, as the book does):

```bash
cd chapters
../.venv/bin/papermill 02_training.ipynb ../book/executed/02_training.ipynb -p profile gpu
```

`-p profile gpu` overrides the `parameters` cell; any other knob the cell declares can be overridden
the same way. A failing chapter leaves its partial output in `book/executed/<name>.failed.ipynb`."""),
("md", """## Sharding a sweep

`routing-laws sweep --shard i/n` runs every n-th run of the grid starting at run i, so n machines
split one grid without talking to each other. Each writes one JSON record per run into its own
`data/runs/<profile>/`; merging is copying the record files into one folder (run ids are unique, so
nothing collides); rewrite the folder's `runs.csv` summary (`sweep.write_summary`, which every sweep
also does when it ends) and `routing-laws fit` reads them all."""),
("code", """n_shards = 4
runs = sweep.get_profile("gpu").runs()
for i in range(n_shards):
    part = sweep.select(runs, shard=(i, n_shards))
    print(f"routing-laws sweep --profile gpu --shard {i}/{n_shards}: {len(part):3d} runs, e.g. {part[0].run_id}")"""),
("md", """```bash
# on machine i of 4
.venv/bin/routing-laws sweep --profile gpu --shard i/4
# afterwards, on one machine: copy every shard's records together, then fit
rsync -a machine1:routing-laws/data/runs/gpu/*.json data/runs/gpu/
.venv/bin/python -c "from routing_laws import sweep; sweep.write_summary(sweep.runs_dir('gpu'))"
.venv/bin/routing-laws fit data/runs/gpu/runs.csv
```

## Resuming

A sweep is safe to interrupt. Finished runs are skipped on the next start; an interrupted run
resumes from its last checkpoint and ends bit-identical to an uninterrupted one (batch *i* depends
only on the seed and *i*). Failed runs are recorded with their reason and skipped until you pass
`--retry-failed`; `--list` shows each selected run's status without running anything."""),
("code", """folder = sweep.runs_dir(grid_name)
records, problems = sweep.read_records(folder) if folder.exists() else ([], [])
status = {}
for r in records:
    status[r.get("status", "?")] = status.get(r.get("status", "?"), 0) + 1
planned = len(sweep.get_profile(grid_name).runs())
print(f"{folder}: {len(records)} records of {planned} planned runs {status or ''}"
      + ("" if records else f" -- start with: routing-laws sweep --profile {grid_name}"))"""),
("md", """## Summary

- `book.PROFILES` sizes the chapters, `sweep.PROFILES` the sweep grids; `auto` picks `gpu` on an
  accelerator.
- Install `jax[cuda12]` or `jax[tpu]` into `.venv`; bf16 compute is automatic.
- `routing-laws book --profile gpu` (or papermill with `-p profile gpu`) executes the book in batch.
- `routing-laws sweep --profile gpu --shard i/n` splits a grid; merge by copying the records; rerun
  to resume.

**Read next:** *The unified scaling law* fits the law to the records a sweep produced."""),
]
write_notebook(new_notebook(cells), "chapters/08_scale.ipynb")
