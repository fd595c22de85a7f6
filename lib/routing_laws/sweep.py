"""Resumable grids of runs (size x experts x router, plus R and K variants) -> data/runs/<profile>/.

Each finished (or failed) run writes one JSON record atomically; rerunning skips finished runs and
resumes interrupted ones from their checkpoint; ``shard=(i, n)`` runs every n-th run so several
machines can split one grid and merge by copying the records together. ``runs.csv`` summarises the
records and is what ``routing-laws fit`` reads.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from routing_laws.config import ROUTER_LABELS, RouterConfig, TrainConfig, model_config
from routing_laws.errors import RoutingLawsError, ValidationError
from routing_laws.io_utils import atomic_write_json, atomic_write_text, provenance, repo_root


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid; ``run_id`` is its file name and identity."""

    size: str
    router: str
    experts: int
    top_k: int = 1
    routing_frequency: float = 0.5
    seed: int = 0

    @property
    def run_id(self) -> str:
        return f"{self.size}-{self.router}-E{self.experts}-K{self.top_k}-R{self.routing_frequency:g}-s{self.seed}"


@dataclass(frozen=True)
class Profile:
    """A named grid plus the shared training settings of all its runs (same budget and data order)."""

    name: str
    sizes: tuple[str, ...]
    experts: tuple[int, ...]
    routers: tuple[str, ...]
    tokens: int
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float = 3e-3
    variants: tuple[tuple[str, str, int, int, float], ...] = ()  # (size, router, E, K, R) extra runs for the (F, B) law

    def runs(self) -> list[RunSpec]:
        out = []
        for size in self.sizes:
            out.append(RunSpec(size, "dense", 1))
            for router in self.routers:
                out.extend(RunSpec(size, router, e) for e in self.experts if e > 1)
        out.extend(RunSpec(s, r, e, k, rf) for s, r, e, k, rf in self.variants)
        return out

    def train_config(self, seed: int = 0) -> TrainConfig:
        return TrainConfig(tokens=self.tokens, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           seed=seed, checkpoint_every=50)


ROUTED = ("sbase", "rlr", "hash")
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", ("100k",), (1, 4), ROUTED, tokens=131_072, batch_size=16,
                     variants=(("100k", "sbase", 4, 2, 0.5),)),
    "cpu": Profile("cpu", ("100k", "200k", "400k"), (1, 4, 16, 64), ROUTED, tokens=8_388_608,
                   variants=(("200k", "sbase", 16, 2, 0.5), ("200k", "sbase", 16, 1, 1.0),
                             ("200k", "hash", 16, 1, 1.0))),
    # one size, E = 16, every router: the issue-3 check that each router beats dense at one budget
    "routers": Profile("routers", ("100k",), (16,), ROUTED, tokens=8_388_608),
    "gpu": Profile("gpu", ("800k", "3M", "6M", "25M"), (1, 2, 4, 8, 16, 32, 64, 128, 256), ROUTED,
                   tokens=20_971_520, batch_size=64, seq_len=256, learning_rate=2e-3,
                   variants=(("3M", "sbase", 64, 2, 0.5), ("3M", "sbase", 64, 1, 1.0), ("3M", "sbase", 64, 1, 0.25),
                             ("3M", "hash", 64, 1, 1.0), ("3M", "hash", 64, 1, 0.25))),
}

SUMMARY_FIELDS = ("run_id", "status", "technique", "size", "N", "E", "K", "R", "P", "F", "B", "tokens", "loss",
                  "tokens_per_s", "wall_s", "dropped_frac", "reason")


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValidationError("profile", f"unknown sweep profile {name!r}", "choose one of: " + ", ".join(PROFILES))
    return PROFILES[name]


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValidationError("--shard", f"expected i/n such as 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValidationError("--shard", f"need 0 <= i < n, got {i}/{n}")
    return i, n


def select(runs: list[RunSpec], only: Iterable[str] | None = None, shard: tuple[int, int] = (0, 1)) -> list[RunSpec]:
    """Filter by ``only`` (substrings of run ids, e.g. 'sbase' or '100k-') and take shard i of n."""
    only = [o for o in (only or []) if o]
    if only:
        runs = [r for r in runs if any(o in r.run_id for o in only)]
        if not runs:
            raise ValidationError("--only", f"{only} matches no run of this profile", "check the run ids with --list")
    i, n = shard
    return [r for k, r in enumerate(runs) if k % n == i]


def runs_dir(profile: str, root: Path | None = None) -> Path:
    return (root or repo_root() / "data" / "runs") / profile


def read_records(folder: Path) -> tuple[list[dict], list[str]]:
    """All run records in ``folder`` and a list of problems (corrupt or foreign files are reported, never used)."""
    from routing_laws.train import load_record

    records, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            if isinstance(rec, dict) and rec.get("status") == "failed" and "run_id" in rec:
                records.append(rec)
                continue
            rec = load_record(path)
            if rec.get("run_id") != path.stem:
                raise RoutingLawsError(f"{path.name} holds run {rec.get('run_id')!r}, not {path.stem!r}")
            records.append(rec)
        except (RoutingLawsError, json.JSONDecodeError, OSError, ValidationError, TypeError) as e:
            problems.append(f"{path.name}: {e}")
    return records, problems


def summary_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        spec = r.get("spec", {})
        row = {"run_id": r.get("run_id"), "status": r.get("status"), "technique": spec.get("router"),
               "size": spec.get("size"), "E": spec.get("experts"), "K": spec.get("top_k"),
               "R": spec.get("routing_frequency"), "reason": r.get("reason", "")}
        if r.get("status") == "finished":
            a = r["accounting"]
            row.update(N=a["N"], P=a["P"], F=a["F"], B=a["B"], tokens=r["tokens"], loss=r["final_val_loss"],
                       tokens_per_s=r["tokens_per_s"], wall_s=r["wall_s"],
                       dropped_frac=(r.get("routing") or {}).get("dropped_frac", ""))
        rows.append(row)
    return rows


def run_label(rec: dict) -> str:
    """'S-BASE E=16' style label of a finished record (router, and E for routed runs)."""
    spec = rec.get("spec") or {}
    router = spec.get("router", rec.get("model", {}).get("router", {}).get("kind", "?"))
    E = spec.get("experts", 1)
    return ROUTER_LABELS.get(router, router) + ("" if router == "dense" else f" E={E}")


def _finished_records(records: list[dict]) -> list[dict]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValidationError("records", "must be a list of run records (dicts)", "use read_records(folder)")
    return [r for r in records if r.get("status") == "finished"]


def comparison_rows(records: list[dict]) -> list[dict]:
    """One row per finished run: final validation loss, its difference to the dense run of the same size
    (None without one), the training drops (capacity factor) of the last logged window and the largest of
    any window, and the evaluation routing metrics; ``router`` (label) and ``E`` are there for grouping."""
    fin = _finished_records(records)
    dense = {(r.get("spec") or {}).get("size"): r["final_val_loss"] for r in fin
             if (r.get("spec") or {}).get("router") == "dense"}
    rows = []
    for r in sorted(fin, key=lambda r: r["final_val_loss"]):
        routing, size = r.get("routing") or {}, (r.get("spec") or {}).get("size")
        curve = r.get("train_curve") or [{}]
        drops = [p["dropped_frac"] for p in curve if p.get("dropped_frac") is not None]
        spec = r.get("spec") or {}
        rows.append({"run": run_label(r), "router": ROUTER_LABELS.get(spec.get("router"), spec.get("router")),
                     "size": size, "E": spec.get("experts", 1), "tokens": r["tokens"], "val_loss": r["final_val_loss"],
                     "vs_dense": r["final_val_loss"] - dense[size] if size in dense else None,
                     "train_dropped": curve[-1].get("dropped_frac"), "train_dropped_max": max(drops) if drops else None,
                     "eval_max_over_mean_load": max(routing["max_over_mean_load"]) if routing.get("max_over_mean_load") else None,
                     # HASH has no router (its recorded entropy is 0 by construction)
                     "router_entropy": None if (r.get("spec") or {}).get("router") == "hash" else routing.get("router_entropy")})
    return rows


def curve_rows(records: list[dict]) -> list[dict]:
    """Validation curves of the finished runs as {run, tokens, loss} rows (charts.loss_curve_chart)."""
    return [{"run": run_label(r), "tokens": p["tokens"], "loss": p["val_loss"]}
            for r in _finished_records(records) for p in r.get("curve", [])]


def write_summary(folder: Path) -> Path:
    records, _ = read_records(folder)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in sorted(summary_rows(records), key=lambda x: x["run_id"] or ""):
        w.writerow(row)
    return atomic_write_text(Path(folder) / "runs.csv", buf.getvalue())


def _finished(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


def run_sweep(profile: str | Profile, *, only: Iterable[str] | None = None, shard: tuple[int, int] = (0, 1),
              out_dir: Path | None = None, corpus: str | None = None, progress: bool = True,
              retry_failed: bool = False, mesh=None) -> dict:
    """Run (or resume) every selected run of ``profile``; returns counts of done / skipped / failed runs.
    ``mesh`` (``parallel.make_mesh``) is passed to every run's ``train``."""
    from routing_laws import data as data_lib
    from routing_laws import train as train_lib

    prof = get_profile(profile) if isinstance(profile, str) else profile
    out = Path(out_dir) if out_dir is not None else runs_dir(prof.name)
    out.mkdir(parents=True, exist_ok=True)
    todo = select(prof.runs(), only, shard)
    dataset = data_lib.get_dataset(corpus)
    counts = {"selected": len(todo), "finished": 0, "skipped": 0, "failed": 0}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"sweep {prof.name}", unit="run", position=0)
    for spec in todo:
        path = out / f"{spec.run_id}.json"
        if _finished(path) or (path.exists() and not retry_failed):
            counts["skipped"] += 1
            if bar is not None:
                bar.update(1)
            continue
        t0 = time.perf_counter()
        try:
            router = RouterConfig(kind=spec.router, n_experts=spec.experts, top_k=spec.top_k,
                                  routing_frequency=spec.routing_frequency)
            mcfg = model_config(spec.size, vocab_size=dataset.vocab_size, seq_len=prof.seq_len, router=router)
            rec = train_lib.train(mcfg, prof.train_config(spec.seed), dataset, run_dir=out / ".checkpoints" / spec.run_id,
                                  progress=progress, name=spec.run_id, mesh=mesh)
            rec.update(run_id=spec.run_id, spec=spec.__dict__, profile=prof.name)
            atomic_write_json(path, rec)
            shutil.rmtree(out / ".checkpoints" / spec.run_id, ignore_errors=True)
            counts["finished"] += 1
        except KeyboardInterrupt:
            raise
        except Exception as e:  # record the failure (NaN, OOM, bad config) and go on with the grid
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            atomic_write_json(path, {"run_id": spec.run_id, "status": "failed", "reason": reason, "spec": spec.__dict__,
                                     "profile": prof.name, "wall_s": time.perf_counter() - t0,
                                     "traceback": traceback.format_exc()[-4000:], "provenance": provenance()})
            counts["failed"] += 1
        if bar is not None:
            bar.update(1)
        write_summary(out)
    if bar is not None:
        bar.close()
    write_summary(out)
    return counts
