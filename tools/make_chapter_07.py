"""Writes chapters/07_performance.ipynb (kept so the chapter can be regenerated and reviewed as Python)."""
from routing_laws.book import new_notebook, write_notebook

cells = [
("md", """# Performance

**Overview.** A routed layer holds E times the dense FFN's parameters but, with top-1 routing, does
about the same arithmetic per token. How close does it come to the dense layer's speed? This chapter
shows the recorded benchmarks in `data/bench/` (routed vs dense throughput by number of experts E
and width d), explains the ceiling the capacity factor puts on it, and measures a small layer live
on the machine running this page.

**What you need.** The recorded results come with the repository; add your own with
`routing-laws bench layer` (writes `data/bench/layer-<backend>-<router>-<date>.json`). The live
measurement is sized by the book's profile (`bench_steps` timed repeats)."""),
("code", """import jax
from routing_laws import bench, book, charts, moe
from routing_laws import routing_demo as demo

charts.enable_offline()
P = book.profile_params(profile)
print(f"profile {P['profile']}: {P['bench_steps']} timed repeats per measurement; this machine: "
      f"JAX {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}")"""),
("md", """## What is measured

`bench.layer_bench` times one training step (forward and backward, `jit`, warm-up excluded, median
of repeats) of a routed FFN — router logits, S-BASE's Sinkhorn, dispatch into the E × C capacity
buffer, the experts as one batched matmul, and the combine — against the dense FFN with the same
active FLOPs per token. `vs_dense` = dense time / routed time: 1.0 means routing costs nothing,
0.5 means the routed layer trains at half the dense layer's tokens per second."""),
("md", """## The capacity-factor ceiling

Every expert computes on all C = ⌈cf · N / E⌉ of its slots, filled or not, so the routed layer does
cf times the dense layer's FFN arithmetic even when routing is free. On hardware that is
compute-bound the routed layer can therefore reach at most **1 / cf** of the dense throughput:
0.8 at cf = 1.25, 0.5 at the paper's cf = 2. Dispatch and combine (gathers and scatters) and the
router add on top; on a CPU, where the small batched matmuls run less efficiently than one large
one, the gap grows with E."""),
("code", """for cf in (1.0, 1.25, 2.0):
    C = moe.capacity(512, 64, 1, cf)
    print(f"cf {cf:4}: C = {C:3d} slots per expert for 512 tokens and E = 64 -> {64 * C} slots = "
          f"{64 * C / 512:.2f} x the tokens; ceiling vs dense 1/cf = {1 / cf:.2f}")"""),
("md", """## Recorded results

Every file in `data/bench/` carries its provenance (machine, device, JAX version, date). Hover a
point for its timings; click a legend entry to highlight one series."""),
("code", """rows = demo.bench_rows()
backends = sorted({r["backend"] for r in rows})
for b in backends:
    files = sorted({(r["file"], r["device"], r["machine"], r["jax"], r["date"]) for r in rows if r["backend"] == b})
    for f, dev, machine, jv, date in files:
        print(f"{b}: {f}  device {dev}, machine {machine}, JAX {jv}, measured {date}")
for b in ("gpu", "tpu"):
    if b not in backends:
        print(f"{b}: not measured yet (run `routing-laws bench layer` on a {b.upper()} machine and commit the JSON)")
print()
print(f"{'backend':8s} {'router':7s} {'d':>5s} {'E':>5s} {'cf':>5s} {'dense ms':>9s} {'routed ms':>10s} {'vs_dense':>9s} {'1/cf':>5s}")
for r in sorted(rows, key=lambda r: (r["backend"], r["router"], r["d_model"], r["n_experts"])):
    print(f"{r['backend']:8s} {r['router']:7s} {r['d_model']:5d} {r['n_experts']:5d} {r['capacity_factor']:5.2f} "
          f"{r['dense_ms']:9.2f} {r['routed_ms']:10.2f} {r['vs_dense']:9.3f} {1 / r['capacity_factor']:5.2f}")"""),
("code", """if rows:
    for r in rows:
        r["series"] = f"{r['backend']} {r['router']}, d = {r['d_model']}"
    display(charts.bench_chart(rows, title="Recorded: routed / dense throughput vs E"))
else:
    print("No recorded results in data/bench/: run `routing-laws bench layer` to create one.")"""),
("md", """## A live measurement on this machine

A small grid, sized by the profile, timed right now. Expect noise on a busy machine; the numbers are
medians of `bench_steps` repeats."""),
("code", """# each (d, E) pair compiles three programs: kept small on CPUs
grid = {"smoke": dict(experts=(8,), d_models=(64,), tokens=256),
        "cpu": dict(experts=(8, 64), d_models=(128,), tokens=512),
        "gpu": dict(experts=(8, 64, 256), d_models=(256, 512, 1024), tokens=16384)}[P["profile"]]
dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
live = bench.layer_bench(**grid, capacity_factor=1.25, router="sbase", dtype=dtype, repeats=P["bench_steps"])
print(bench.format_table(live))
live_rows = [{**r, "series": f"live {live['provenance'].get('backend')}, d = {r['d_model']}",
              "device": str(live["provenance"].get("device")), "jax": str(live["provenance"].get("jax")),
              "date": str(live["provenance"].get("date_utc"))[:10]} for r in live["rows"] if "vs_dense" in r]
charts.bench_chart(live_rows, title="Live on this machine: routed / dense vs E")"""),
("md", """## Summary

- A top-1 routed layer does the dense layer's useful arithmetic plus padding: its throughput is
  capped at about 1 / cf of the dense layer's (0.8 at cf = 1.25, 0.5 at cf = 2).
- On CPUs the measured ratio falls further with E (many small matmuls, gathers and scatters, and
  Sinkhorn's cost growing with E); accelerators with bf16 and large batches come closer to the cap.
- Every recorded number carries its machine, JAX version and date.

**Read next:** *Running at scale* shows how to run the sweep and the book on a GPU or TPU, and how
to split a sweep over machines."""),
]
write_notebook(new_notebook(cells), "chapters/07_performance.ipynb")
