"""Run the chapters with papermill under a profile, stage the executed copies, build the Jupyter Book.

Layout (the book's root is the repository root):
- ``chapters/<name>.ipynb``: sources, committed without outputs, with a cell tagged ``parameters``
  that sets at least ``profile = "auto"`` (see ``check_chapter``; ``new_notebook`` writes such files).
- ``book/executed/<name>.ipynb``: the executed copy (git-ignored). ``_toc.yml`` lists chapters by
  this staged name (``file: book/executed/<name>``), so the toc alone says which sources to run.
- ``_build/html/index.html``: the book, built by ``jupyter-book build --all -W -n --keep-going .``
  with ``execute_notebooks: "off"`` (papermill already executed everything; ``--all`` so pages never
  go stale when only the Sphinx extension or config changed).

Profiles (``PROFILES``): ``smoke`` (seconds, for tests), ``cpu`` (``make book`` on 2 cores, minutes),
``gpu`` (an accelerator, bigger live runs) and ``auto`` (``gpu`` when JAX sees a GPU or TPU, else
``cpu``; ``$ROUTING_LAWS_PROFILE`` overrides). ``execute_chapters`` resolves ``auto`` once, then papermill
injects ``profile`` (the concrete name) and every other knob the chapter's ``parameters`` cell declares.
Recommended chapter pattern: ``profile = "auto"`` in the parameters cell, then
``P = routing_laws.book.profile_params(profile)`` and read ``P["train_tokens"]`` etc.
Kernels run in ``chapters/`` with ``ROUTING_LAWS_CHARTS=html`` so charts render for the book.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from routing_laws.book_pages import (  # noqa: F401  (re-exported)
    CHAPTER_DIR, STAGE_DIR, TOC, BookBuildError, check_chapter, check_toc, new_notebook, toc_chapters,
    toc_pages, write_notebook)
from routing_laws.errors import RoutingLawsError, ValidationError, check_choice, check_int
from routing_laws.io_utils import repo_root

PROFILES: dict[str, dict[str, Any]] = {
    # knob meanings: model_size is a key of config.SIZES; train_tokens per live run; n_experts of the
    # live routed demos; bootstrap resamples for fits; bench_steps timed steps per benchmark;
    # batch_size sequences per step and eval_tokens validation tokens per evaluation of live runs.
    "smoke": {"profile": "smoke", "model_size": "100k", "train_tokens": 16_384, "n_experts": 4,
              "bootstrap": 20, "bench_steps": 3, "batch_size": 16, "eval_tokens": 4_096},
    "cpu": {"profile": "cpu", "model_size": "400k", "train_tokens": 400_000, "n_experts": 8,
            "bootstrap": 200, "bench_steps": 10, "batch_size": 32, "eval_tokens": 32_768},
    "gpu": {"profile": "gpu", "model_size": "6M", "train_tokens": 20_000_000, "n_experts": 32,
            "bootstrap": 1000, "bench_steps": 50, "batch_size": 64, "eval_tokens": 262_144},
    "auto": {"profile": "auto"},  # resolved inside the kernel by profile_params()
}
PROFILE_NAMES = tuple(PROFILES)
CELL_TIMEOUT_S = 3600
PROFILE_ENV = "ROUTING_LAWS_PROFILE"


class ChapterError(RoutingLawsError):
    """A chapter failed to execute or breaks the notebook rules; the message names the chapter."""


# --------------------------------------------------------------------------- profiles
def validate_profiles(profiles: dict[str, dict[str, Any]] = PROFILES) -> None:
    """Check the profile table: same knobs everywhere, sensible values, ``auto`` holds only its name."""
    from routing_laws.config import SIZES

    concrete = [n for n in profiles if n != "auto"]
    if profiles.get("auto") != {"profile": "auto"}:
        raise ValidationError("PROFILES['auto']", "must be exactly {'profile': 'auto'}", "knobs come from cpu/gpu")
    keys = set(profiles[concrete[0]])
    for name in concrete:
        p = profiles[name]
        if set(p) != keys:
            raise ValidationError(f"PROFILES[{name!r}]", f"knobs {sorted(set(p) ^ keys)} differ from {concrete[0]!r}",
                                  "give every profile the same knobs")
        if p.get("profile") != name:
            raise ValidationError(f"PROFILES[{name!r}]['profile']", f"is {p.get('profile')!r}", f"set it to {name!r}")
        if p["model_size"] not in SIZES:
            raise ValidationError(f"PROFILES[{name!r}]['model_size']", f"unknown size {p['model_size']!r}",
                                  "use a key of routing_laws.config.SIZES")
        for k in ("train_tokens", "n_experts", "bootstrap", "bench_steps", "batch_size", "eval_tokens"):
            check_int(f"PROFILES[{name!r}][{k!r}]", p[k], min_value=1)
    for k in ("train_tokens", "bootstrap", "bench_steps"):  # bigger profiles never do less work
        if not profiles["smoke"][k] <= profiles["cpu"][k] <= profiles["gpu"][k]:
            raise ValidationError(f"PROFILES[*][{k!r}]", "must grow smoke <= cpu <= gpu")


def resolve_profile(profile: str, backend: str | None = None) -> str:
    """``auto`` -> ``$ROUTING_LAWS_PROFILE`` if set, else ``gpu`` when JAX's backend is gpu/tpu, else ``cpu``.

    The variable lets tests run chapters whose parameters say ``auto`` at smoke size
    (``ROUTING_LAWS_PROFILE=smoke pytest --nbval-lax chapters/``).
    """
    check_choice("profile", profile, PROFILE_NAMES)
    if profile != "auto":
        return profile
    forced = os.environ.get(PROFILE_ENV, "").strip()
    if forced:
        return check_choice(PROFILE_ENV, forced, [n for n in PROFILE_NAMES if n != "auto"])
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "gpu" if backend in ("gpu", "cuda", "rocm", "tpu") else "cpu"


def profile_params(profile: str = "auto", backend: str | None = None) -> dict[str, Any]:
    """All knobs of ``profile`` (``auto`` resolved), plus ``requested`` = the name asked for."""
    name = resolve_profile(profile, backend)
    return {**PROFILES[name], "requested": profile}


def injected_parameters(profile: str, declared: Iterable[str]) -> dict[str, Any]:
    """What papermill injects: ``profile`` plus the knobs of that profile the chapter declares."""
    check_choice("profile", profile, PROFILE_NAMES)
    return {k: v for k, v in PROFILES[profile].items() if k == "profile" or k in set(declared)}


# --------------------------------------------------------------------------- execute and build
@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _select(requested: Iterable[str] | None, listed: list[str]) -> list[str]:
    if requested is None:
        return listed
    out = []
    for raw in requested:
        name = Path(str(raw)).name.removesuffix(".ipynb")
        if name not in listed:
            raise ValidationError("--only", f"chapter {raw!r} is not in {TOC}", "choose one of: " + ", ".join(listed))
        out.append(name)
    return out


def execute_chapters(profile: str, chapters: Iterable[str] | None = None, *, root: Path | None = None,
                     log: Callable[[str], None] = print, cell_timeout: int = CELL_TIMEOUT_S) -> list[Path]:
    """Run each toc chapter (or those named) with papermill under ``profile``; return the staged paths.

    Runs every requested chapter even after a failure, then raises ``ChapterError`` naming each failed
    chapter, its failing cell and where the partial output is (``book/executed/<name>.failed.ipynb``).
    """
    import nbformat
    import papermill as pm

    check_choice("profile", profile, PROFILE_NAMES)
    requested, profile = profile, resolve_profile(profile)  # auto: decided once, here (same machine)
    if requested != profile:
        log(f"book: profile auto -> {profile}")
    root = Path(root or repo_root())
    names = _select(chapters, toc_chapters(root))
    check_toc(root, need_staged=False)
    stage = root / STAGE_DIR
    stage.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for name in names:
        src, out = root / CHAPTER_DIR / f"{name}.ipynb", stage / f"{name}.ipynb"
        problems = check_chapter(src)
        if problems:
            failed.append(f"{src.relative_to(root)}: " + "; ".join(problems))
            continue
        declared = set(pm.inspect_notebook(str(src)).keys())
        params = injected_parameters(profile, declared)
        tmp, bad = stage / f".{name}.{os.getpid()}.running.ipynb", stage / f"{name}.failed.ipynb"
        t0 = time.perf_counter()
        log(f"book: executing {src.relative_to(root)} (profile {profile}) ...")
        try:
            with _env(ROUTING_LAWS_CHARTS="html", PYDEVD_DISABLE_FILE_VALIDATION="1"):
                pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                    language="python", cwd=str(src.parent), progress_bar=False,
                                    execution_timeout=cell_timeout, log_output=False)
        except Exception as e:  # papermill wraps cell errors; anything else is also this chapter's failure
            if tmp.exists():
                os.replace(tmp, bad)
            out.unlink(missing_ok=True)  # never build from a stale copy of a failing chapter
            failed.append(f"{src.relative_to(root)} failed: {_short(e)} (partial output: {bad.relative_to(root)})")
            log(f"book: FAILED {name} after {time.perf_counter() - t0:.1f} s")
            continue
        wall = time.perf_counter() - t0
        nb = nbformat.read(str(tmp), as_version=4)
        _hide_default_parameters(nb)
        nb.metadata["routing_laws"] = {"source": f"{CHAPTER_DIR.as_posix()}/{name}.ipynb", "profile": profile,
                                       "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                                       "wall_s": round(wall, 2)}
        write_notebook(nb, out)
        tmp.unlink(missing_ok=True)
        bad.unlink(missing_ok=True)
        done.append(out)
        log(f"book: executed {name} in {wall:.1f} s -> {out.relative_to(root)}")
    if failed:
        raise ChapterError(f"{len(failed)} of {len(names)} chapter(s) failed: " + " | ".join(failed))
    return done


def _hide_default_parameters(nb) -> None:
    """In the book, show papermill's injected values, not the overridden defaults (tag remove-cell)."""
    tags_of = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    if any("injected-parameters" in t for t in tags_of):
        for cell, tags in zip(nb.cells, tags_of):
            if "parameters" in tags and "remove-cell" not in tags:
                cell.metadata["tags"] = [*tags, "remove-cell"]


def _short(e: Exception) -> str:
    """One line for a papermill error: the exception name, value and failing cell."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        cell = getattr(e, "exec_count", None)
        return f"{ename}: {evalue}" + (f" in cell [{cell}]" if cell is not None else "")
    return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"


def stale_chapters(root: Path | None = None) -> list[str]:
    """Staged chapters whose source changed since they were executed."""
    import nbformat

    root = Path(root or repo_root())
    stale = []
    for name in toc_chapters(root):
        src, out = root / CHAPTER_DIR / f"{name}.ipynb", root / STAGE_DIR / f"{name}.ipynb"
        if src.is_file() and out.is_file():
            meta = nbformat.read(str(out), as_version=4).metadata.get("routing_laws", {})
            if meta.get("source_sha256") != hashlib.sha256(src.read_bytes()).hexdigest():
                stale.append(name)
    return stale


def jupyter_book_exe() -> str:
    """The ``jupyter-book`` next to this Python (the venv's), else one on PATH."""
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.is_file():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        raise BookBuildError("jupyter-book is not installed (pip install -e '.[book]' or make book)")
    return found


def build_book(root: Path | None = None, *, log: Callable[[str], None] = print) -> Path:
    """``jupyter-book build --all -W -n --keep-going`` the staged book; return ``_build/html/index.html``."""
    root = Path(root or repo_root())
    check_toc(root, need_staged=True)
    for name in stale_chapters(root):
        log(f"book: warning: {STAGE_DIR.as_posix()}/{name}.ipynb was not executed from the current "
            f"{CHAPTER_DIR.as_posix()}/{name}.ipynb (rerun: routing-laws book --only {name})")
    cmd = [jupyter_book_exe(), "build", "--all", "-W", "-n", "--keep-going", str(root)]
    log("book: " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "ERROR" in ln or "rror" in ln]
        tail = "\n".join((lines or (proc.stdout + proc.stderr).splitlines())[-15:])
        raise BookBuildError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise BookBuildError(f"jupyter-book succeeded but {index} is missing")
    log(f"book: built {index} in {time.perf_counter() - t0:.1f} s")
    return index
