"""The book: chapter sources and their rules, profiles, papermill execution, the Jupyter Book build,
and the first cell that installs the project where a chapter is opened without it (Colab).

Layout (the book's root is the repository root):
- ``chapters/<name>.md`` + ``chapters/<name>.ipynb``: one chapter, one jupytext pair (``ipynb,md:myst``).
  The MyST text is what authors edit and review; the notebook (committed without outputs) is what
  papermill, Colab, GitHub and JupyterLab open. ``pair_problems`` says when the two differ (fix:
  ``make sync``, i.e. ``jupytext --sync chapters/*.md``); ``check_chapter`` enforces the chapter rules
  (a ``parameters`` cell setting ``profile``, the skeleton overview / what you need / sections /
  summary / read next, no outputs).
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

Readers without a checkout: ``setup_cell`` is every chapter's first code cell (a no-op where
``routing_laws`` imports); in Colab it clones the repository and calls ``colab_bootstrap``, which
installs the clone with ``constraints.txt``. ``io_utils.repo_root`` finds ``data/`` (``$ROUTING_LAWS_ROOT``
or the checkout) and says to clone when a non-editable install has none.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from routing_laws.config import SIZES
from routing_laws.errors import RoutingLawsError, ValidationError, check_choice, check_int
from routing_laws.io_utils import REPO_URL, ROOT_ENV, atomic_write_text, repo_root

# Third-party imports (nbformat, papermill, jupytext, yaml, jax) stay inside the functions that need
# them: they come with the ``book`` extra, and ``routing-laws --help`` must not pay for them.

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
STAGE_DIR = Path("book") / "executed"
CHAPTER_DIR = Path("chapters")
TOC = "_toc.yml"
PAIR_FORMATS = "ipynb,md:myst"
# The chapter skeleton, in order: (what the rule is called, the text a markdown line starts with).
SKELETON = (("title", "# "), ("overview", "**Overview.**"), ("prerequisites", "**What you need.**"),
            ("a section", "## "), ("summary", "## Summary"), ("what next", "**Read next:**"))


class ChapterError(RoutingLawsError):
    """A chapter failed to execute or breaks the notebook rules; the message names the chapter."""


class BookBuildError(RoutingLawsError):
    """jupyter-book failed, or the toc names pages that do not exist."""


# --------------------------------------------------------------------------- profiles
def validate_profiles(profiles: dict[str, dict[str, Any]] = PROFILES) -> None:
    """Check the profile table: same knobs everywhere, sensible values, ``auto`` holds only its name."""
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


# --------------------------------------------------------------------------- chapter sources
def check_chapter(path: str | os.PathLike) -> list[str]:
    """Rule violations of a chapter notebook (empty list = fine): kernelspec, pairing, the parameters
    cell, the skeleton (``SKELETON``, in order), no outputs."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    problems = []
    if nb.metadata.get("jupytext", {}).get("formats") != PAIR_FORMATS:
        problems.append(f"metadata.jupytext.formats must be {PAIR_FORMATS!r} (jupytext --set-formats {PAIR_FORMATS})")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("metadata.kernelspec.name must be 'python3'")
    if nb.metadata.get("language_info", {}).get("name") != "python":
        problems.append("metadata.language_info.name must be 'python'")
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters', found {len(params)}")
    elif "profile" not in _declared(params[0].source):
        problems.append("the parameters cell must set profile (e.g. profile = \"auto\")")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            problems.append(f"cell {i} has outputs or an execution count (clear outputs before committing)")
    problems += _skeleton_problems([c.source for c in nb.cells if c.cell_type == "markdown"])
    return problems


def _skeleton_problems(markdown: list[str]) -> list[str]:
    """The skeleton's parts in order, each at the start of a line of a markdown cell."""
    missing, at = [], 0
    lines = [ln for src in markdown for ln in src.splitlines()]
    for what, start in SKELETON:
        hit = next((k for k in range(at, len(lines)) if lines[k].startswith(start)
                    and not (start == "## " and lines[k].startswith("## Summary"))), None)
        if hit is None:
            missing.append(f"the skeleton needs {what} (a markdown line starting {start.strip()!r}) "
                           "after the parts before it")
        else:
            at = hit + 1
    return missing


def chapter_pair(name: str, root: Path | None = None) -> tuple[Path, Path]:
    """``(chapters/<name>.md, chapters/<name>.ipynb)`` of a chapter."""
    base = Path(root or repo_root()) / CHAPTER_DIR / name
    return base.with_suffix(".md"), base.with_suffix(".ipynb")


def pair_problems(md_path: str | os.PathLike, ipynb_path: str | os.PathLike) -> list[str]:
    """How a chapter's MyST text and its notebook differ (empty list = in sync).

    Both are read with jupytext and compared cell by cell: type, source and tags (the notebook's
    outputs, execution counts and ids are not part of the text). The fix is ``make sync``.
    """
    import jupytext

    md_path, ipynb_path = Path(md_path), Path(ipynb_path)
    for p in (md_path, ipynb_path):
        if not p.is_file():
            return [f"{p} is missing (create the pair: jupytext --set-formats {PAIR_FORMATS} {ipynb_path})"]
    a, b = jupytext.read(md_path), jupytext.read(ipynb_path)
    fix = f"run: jupytext --sync {md_path.as_posix()} (after editing the .md)"
    if len(a.cells) != len(b.cells):
        return [f"{md_path.name} has {len(a.cells)} cells, {ipynb_path.name} {len(b.cells)}: {fix}"]
    problems = []
    for i, (x, y) in enumerate(zip(a.cells, b.cells)):
        for what, u, v in (("type", x.cell_type, y.cell_type), ("source", x.source.strip(), y.source.strip()),
                           ("tags", x.metadata.get("tags", []), y.metadata.get("tags", []))):
            if u != v:
                problems.append(f"cell {i} {what} differs between {md_path.name} and {ipynb_path.name}: {fix}")
                break
    return problems


def pair_sha256(name: str, root: Path | None = None) -> str:
    """One hash of both files of a chapter's pair: a staged copy is current only if neither changed."""
    h = hashlib.sha256()
    for p in chapter_pair(name, root):
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def _declared(source: str) -> set[str]:
    """Names assigned at top level of a parameters cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


# --------------------------------------------------------------------------- toc
def toc_pages(root: Path | None = None) -> list[str]:
    """Every ``file:`` / ``root:`` entry of ``_toc.yml``, in order, without suffix."""
    import yaml

    root = Path(root or repo_root())
    path = root / TOC
    if not path.is_file():
        raise BookBuildError(f"{path} is missing (the book's table of contents)")
    try:
        toc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BookBuildError(f"{path} is not valid YAML: {e}") from None
    pages: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    pages.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return pages


def toc_chapters(root: Path | None = None) -> list[str]:
    """Chapter names (``02_training``) the toc lists as staged notebooks, in order."""
    prefix = STAGE_DIR.as_posix() + "/"
    return [p[len(prefix):].removesuffix(".ipynb") for p in toc_pages(root) if p.startswith(prefix)]


def check_toc(root: Path | None = None, *, need_staged: bool = True) -> list[str]:
    """Raise ``BookBuildError`` listing every toc entry whose source (or staged copy) is missing."""
    root = Path(root or repo_root())
    missing = []
    chapters = set(toc_chapters(root))
    for page in toc_pages(root):
        name = page.removeprefix(STAGE_DIR.as_posix() + "/").removesuffix(".ipynb")
        if name in chapters and page.startswith(STAGE_DIR.as_posix()):
            src = root / CHAPTER_DIR / f"{name}.ipynb"
            if not src.is_file():
                missing.append(f"{TOC} lists {page} but its source {src.relative_to(root)} does not exist")
            elif need_staged and not (root / STAGE_DIR / f"{name}.ipynb").is_file():
                missing.append(f"{page}.ipynb is not staged (run: routing-laws book --only {name})")
        elif not any((root / (page + s)).is_file() for s in ("", ".md", ".ipynb")):
            missing.append(f"{TOC} lists {page} but no {page}.md or {page}.ipynb exists")
    if missing:
        raise BookBuildError("; ".join(missing))
    return sorted(chapters)


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
        problems = check_chapter(src) + pair_problems(root / CHAPTER_DIR / f"{name}.md", src)
        if problems:
            failed.append(f"{src.relative_to(root)}: " + "; ".join(problems))
            continue
        pair_hash = pair_sha256(name, root)  # of what runs: an edit during the run makes the copy stale
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
                                       "pair_sha256": pair_hash, "wall_s": round(wall, 2)}
        atomic_write_text(out, nbformat.writes(nb) + "\n")
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
    """Staged chapters whose source pair (the .md or the .ipynb) changed since they were executed."""
    import nbformat

    root = Path(root or repo_root())
    stale = []
    for name in toc_chapters(root):
        src, out = root / CHAPTER_DIR / f"{name}.ipynb", root / STAGE_DIR / f"{name}.ipynb"
        if src.is_file() and out.is_file():
            meta = nbformat.read(str(out), as_version=4).metadata.get("routing_laws", {})
            if meta.get("pair_sha256") != pair_sha256(name, root):
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
            f"{CHAPTER_DIR.as_posix()}/{name}.md/.ipynb (rerun: routing-laws book --only {name})")
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


# --------------------------------------------------------------------------- Colab and plain installs
COLAB_URL = "https://colab.research.google.com/github/{repo}/blob/main/{path}"


def colab_url(name: str, repo_url: str = REPO_URL) -> str:
    """The "Open in Colab" address of ``chapters/<name>.ipynb`` in the public repository."""
    repo = repo_url.removeprefix("https://github.com/").removesuffix(".git").strip("/")
    if repo.count("/") != 1:
        raise ValidationError("repo_url", f"{repo_url!r} is not https://github.com/OWNER/NAME",
                              "give the repository's GitHub address")
    return COLAB_URL.format(repo=repo, path=f"{CHAPTER_DIR.as_posix()}/{name}.ipynb")


def setup_cell(repo_url: str = REPO_URL) -> str:
    """The source of every chapter's first code cell: in a kernel that cannot import ``routing_laws``
    (Colab, a bare Jupyter) it clones the project and calls ``colab_bootstrap`` from the clone; where
    the project is installed (the book build, ``make lab``) it does nothing."""
    return (
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        "# Colab: fetch and install the project (no-op where routing_laws imports)\n"
        "if importlib.util.find_spec(\"routing_laws\") is None:\n"
        f"    url = \"{repo_url}\"\n"
        "    cmd = [\"git\", \"clone\", \"-q\", \"--depth=1\", url, \"routing-laws\"]\n"
        "    subprocess.run(cmd, check=True)\n"
        "    sys.path.insert(0, \"routing-laws/lib\")\n"
        "    from routing_laws.book import colab_bootstrap\n"
        "\n"
        "    colab_bootstrap(\"routing-laws\")"
    )


def colab_bootstrap(clone: str | os.PathLike, *, run: Callable[..., Any] | None = None,
                    gpu: bool | None = None, environ: dict | None = None) -> list[str]:
    """Install a fresh clone into this kernel's Python with the tested pins; return the pip command.

    ``clone`` is the folder ``git clone`` made. The install is editable (so ``repo_root()`` finds
    ``data/``), uses ``constraints.txt`` (never ``-U``), adds the ``cuda12`` extra when an NVIDIA GPU
    is visible (``nvidia-smi`` on PATH, or ``gpu=True``), and sets ``$ROUTING_LAWS_ROOT`` to the clone.
    ``run`` defaults to ``subprocess.run`` (tests pass a fake: nothing here needs the network).
    """
    root = Path(clone).resolve()
    for need in ("pyproject.toml", "constraints.txt", "data/paper"):
        if not (root / need).exists():
            raise ValidationError("clone", f"{root} has no {need}",
                                  f"pass the folder that `git clone {REPO_URL}` created")
    if gpu is None:
        gpu = shutil.which("nvidia-smi") is not None
    target = f"{root}[cuda12]" if gpu else str(root)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "-c", str(root / "constraints.txt"), "-e", target]
    (run or subprocess.run)(cmd, check=True)
    (os.environ if environ is None else environ)[ROOT_ENV] = str(root)
    return cmd


