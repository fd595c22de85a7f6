"""Unit tests of the book machinery: offline chart renderer and builders, profiles, toc and staging."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from routing_laws import book, charts, io_utils, tables
from routing_laws.errors import ValidationError
from routing_laws.io_utils import repo_root

CDN_MARKERS = ("cdn.jsdelivr", "unpkg.com", "cdnjs.cloudflare", "https://cdn.", "//cdn.")
ROOT = repo_root()


def _sample_charts(rng):
    recs = [dict(run=r, tokens=i * 1000, loss=4 - 0.3 * np.log1p(i) + 0.01 * rng.random())
            for r in ("dense", "sbase") for i in range(1, 20)]
    pts = [dict(N=n, E=e, loss=float(3 * n ** -0.04 * e ** -0.02)) for n in (1e6, 1e7) for e in (1, 4, 16)]
    lines = [dict(N=n, E=float(e), loss=float(3 * n ** -0.04 * e ** -0.02)) for n in (1e6, 1e7)
             for e in np.geomspace(1, 16, 9)]
    curves = [dict(loss=l, E=e, N=1e6 * e ** -0.5 * l) for l in (3.0, 3.1) for e in (1, 2, 4, 8)]
    return {
        "loss_curve": (charts.loss_curve_chart(recs), len(recs)),
        "loss_vs_experts": (charts.loss_vs_experts_chart(pts, lines), len(pts) + len(lines)),
        "iso_loss": (charts.iso_loss_chart(curves, points=[dict(N=1e6, E=4)]), len(curves) + 1),
        "xy_bar": (charts.xy_chart([dict(expert=str(i), load=0.1 * i) for i in range(6)], x="expert", y="load",
                                   x_type="nominal", mark="bar", x_title="expert (index)",
                                   y_title="load (fraction of tokens)"), 6),
    }


def _data_rows(spec: dict) -> int:
    """Rows of inline data anywhere in a spec (the reference the builders must preserve)."""
    n = 0
    if isinstance(spec, dict):
        if isinstance(spec.get("data"), dict) and "values" in spec["data"]:
            n += len(spec["data"]["values"])
        n += sum(_data_rows(v) for k, v in spec.items() if k != "data")
    elif isinstance(spec, list):
        n += sum(_data_rows(v) for v in spec)
    return n


# --------------------------------------------------------------------------- renderer
@pytest.mark.parametrize("name", ["loss_curve", "loss_vs_experts", "iso_loss", "xy_bar"])
def test_renderers_emit_no_cdn_and_keep_every_row(name):
    chart, n_rows = _sample_charts(np.random.default_rng(0))[name]
    spec = chart.to_dict()
    assert _data_rows(spec) == n_rows
    html = charts.html_renderer(spec)["text/html"]
    assert not any(m in html for m in CDN_MARKERS)
    assert "vegaEmbed(" in html and charts.count_charts(html) == 1
    assert "</script" not in html.split("<script", 1)[1].split("</script>", 1)[0]  # spec cannot close the tag
    nb = charts.notebook_renderer(spec)
    assert set(nb) == {charts.NOTEBOOK_MIME, "text/plain"}
    assert not any(m in json.dumps(nb) for m in CDN_MARKERS)
    widths = re.findall(r'"width": (\d+)', json.dumps(spec))
    assert widths and all(int(w) <= charts.MAX_WIDTH for w in widths)


@pytest.mark.parametrize("name", ["loss_curve", "loss_vs_experts", "iso_loss", "xy_bar"])
def test_specs_compile_with_vegalite_5_and_6(name):
    """Book (v6) and JupyterLab's bundled Vega-Lite 5 must both accept the spec; tooltips exist."""
    import vl_convert as vlc

    chart, _ = _sample_charts(np.random.default_rng(1))[name]
    spec = chart.to_dict()
    v5 = charts.notebook_renderer(spec)[charts.NOTEBOOK_MIME]
    for version, s in (("6.4", spec), ("5.20", v5)):
        vega = vlc.vegalite_to_vega(s, vl_version=version)
        assert vega["marks"], version
    assert "tooltip" in json.dumps(spec)


def test_enable_offline_modes(monkeypatch):
    import altair as alt

    chart, _ = _sample_charts(np.random.default_rng(2))["xy_bar"]
    monkeypatch.setenv(charts.MODE_ENV, "html")
    assert charts.enable_offline() == "html"
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "text/html" in bundle and not any(m in bundle["text/html"] for m in CDN_MARKERS)
    monkeypatch.delenv(charts.MODE_ENV)
    assert charts.enable_offline() == "notebook"
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert charts.NOTEBOOK_MIME in bundle and "text/html" not in bundle
    monkeypatch.setenv(charts.MODE_ENV, "svg")
    with pytest.raises(ValidationError, match=charts.MODE_ENV):
        charts.enable_offline()
    assert alt.renderers.active == charts.RENDERER + "-notebook"


def test_enable_offline_picks_altairs_colab_renderer_inside_colab(monkeypatch):
    import sys
    import types

    import altair as alt

    monkeypatch.delenv(charts.MODE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    try:
        assert charts.enable_offline() == "colab" and alt.renderers.active == "colab"
        monkeypatch.setenv(charts.MODE_ENV, "notebook")  # an explicit choice wins
        assert charts.enable_offline() == "notebook"
    finally:
        monkeypatch.delitem(sys.modules, "google.colab")
        charts.enable_offline("notebook")


def test_count_charts_counts_ours_and_altair_default():
    html = "".join(charts.html_renderer({"mark": "point"})["text/html"] for _ in range(3))
    html += '<div id="altair-viz-0123abcd"></div>'
    assert charts.count_charts(html) == 4


@pytest.mark.parametrize("rows, match", [
    ([], "empty"),
    ([{"run": "a", "tokens": 1, "loss": float("nan")}], "finite"),
    ([{"run": "a", "tokens": 1}], "missing field 'loss'"),
    ([{"run": "a", "tokens": 1, "loss": "x"}], "number"),
    ({"run": "a"}, "list of row dicts"),
    ([3], "must be a dict"),
])
def test_loss_curve_rejects_bad_rows(rows, match):
    with pytest.raises(ValidationError, match=match):
        charts.loss_curve_chart(rows)


def test_builders_reject_bad_options():
    ok = [dict(N=1e6, E=1, loss=3.0)]
    with pytest.raises(ValidationError, match="width"):
        charts.loss_vs_experts_chart(ok, width=600)
    with pytest.raises(ValidationError, match="> 0 on a log axis"):
        charts.loss_vs_experts_chart([dict(N=-1, E=1, loss=3.0)])
    with pytest.raises(ValidationError, match="x_title"):
        charts.xy_chart([dict(a=1, b=2)], x="a", y="b", x_title=" ", y_title="b (units)")
    with pytest.raises(ValidationError, match="x"):
        charts.loss_curve_chart([dict(run="a", epoch=1, loss=3.0)], x="epoch")
    with pytest.raises(ValidationError, match="x_format"):
        charts.xy_chart([dict(a="p", b=2)], x="a", y="b", x_title="a", y_title="b", x_type="nominal", x_format="~s")


def test_xy_chart_x_format_reaches_the_axis():
    rows = [dict(N=n, r=0.001) for n in (1e5, 2e5, 4e5)]
    spec = charts.xy_chart(rows, x="N", y="r", x_title="N", y_title="r", log_x=True, x_format="~s").to_dict()
    assert spec["encoding"]["x"]["axis"] == {"format": "~s", "labelOverlap": "greedy"}
    plain = charts.xy_chart(rows, x="N", y="r", x_title="N", y_title="r", log_x=True).to_dict()
    assert "axis" not in plain["encoding"]["x"]


def test_si_labels_match_reference():
    rng = np.random.default_rng(3)
    for v in 10 ** rng.uniform(0, 13, 50):
        label = tables.si(v)
        scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(label[-1], 1.0)
        number = float(label[:-1] if label[-1] in "kMBT" else label)
        assert math.isclose(number * scale, v, rel_tol=5e-3)
        assert 1 <= number < 1000 or scale == 1e12


# --------------------------------------------------------------------------- vega_offline extension
def _ext():
    spec = importlib.util.spec_from_file_location("vega_offline", ROOT / "book" / "_ext" / "vega_offline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bundle_version_choice():
    ext = _ext()
    avail = ["5.8", "5.20", "6.1", "6.4"]
    assert ext.bundle_version("6.4.1", avail) == "6.4"
    assert ext.bundle_version("6.5.0", avail) == "6.4"
    assert ext.bundle_version("6.2.0", avail) == "6.1"
    with pytest.raises(RuntimeError, match="vl-convert"):
        ext.bundle_version("7.0.0", avail)
    v, vl, ve = ext.versions()
    assert vl.split(".")[0] == v or vl.startswith(v)  # altair's vega and vega-lite majors agree


# --------------------------------------------------------------------------- profiles
def test_profile_table_validates_and_breaks_loudly():
    book.validate_profiles()
    bad_cases = [
        {**book.PROFILES, "gpu": {k: v for k, v in book.PROFILES["gpu"].items() if k != "bootstrap"}},
        {**book.PROFILES, "cpu": {**book.PROFILES["cpu"], "model_size": "huge"}},
        {**book.PROFILES, "cpu": {**book.PROFILES["cpu"], "train_tokens": 0}},
        {**book.PROFILES, "smoke": {**book.PROFILES["smoke"], "train_tokens": 10 ** 12}},
        {**book.PROFILES, "auto": {"profile": "auto", "train_tokens": 5}},
        {**book.PROFILES, "cpu": {**book.PROFILES["cpu"], "profile": "gpu"}},
    ]
    for bad in bad_cases:
        with pytest.raises(ValidationError):
            book.validate_profiles(bad)


def test_resolve_profile(monkeypatch):
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    assert [book.resolve_profile("auto", b) for b in ("cpu", "gpu", "tpu")] == ["cpu", "gpu", "gpu"]
    assert book.resolve_profile("smoke", "gpu") == "smoke"
    monkeypatch.setenv(book.PROFILE_ENV, "smoke")
    assert book.profile_params("auto", "gpu") == {**book.PROFILES["smoke"], "requested": "auto"}
    monkeypatch.setenv(book.PROFILE_ENV, "auto")
    with pytest.raises(ValidationError, match=book.PROFILE_ENV):
        book.resolve_profile("auto", "cpu")
    with pytest.raises(ValidationError, match="profile"):
        book.resolve_profile("laptop")


def test_injected_parameters_only_declared_knobs():
    assert book.injected_parameters("cpu", []) == {"profile": "cpu"}
    got = book.injected_parameters("gpu", ["train_tokens", "unrelated"])
    assert got == {"profile": "gpu", "train_tokens": book.PROFILES["gpu"]["train_tokens"]}


# --------------------------------------------------------------------------- notebooks, toc, staging
def _write_chapter(path: Path, cells: list[tuple[str, str]], parameters: str = 'profile = "auto"',
                   skeleton: bool = True) -> Path:
    """A chapter pair (``path`` .ipynb + .md) as an author would commit it: title first, a parameters
    cell, the skeleton's parts (unless ``skeleton=False``), no outputs."""
    import jupytext
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["jupytext"] = {"formats": book.PAIR_FORMATS}
    made = [v4.new_markdown_cell(src) if kind == "md" else v4.new_code_cell(src) for kind, src in cells]
    at = 1 if made and made[0].cell_type == "markdown" else 0
    made.insert(at, v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    if skeleton:
        made.insert(at, v4.new_markdown_cell("**Overview.** What it does.\n\n**What you need.** Nothing."))
        made += [v4.new_markdown_cell("## A section\n\ntext"),
                 v4.new_markdown_cell("## Summary\n\n- done\n\n**Read next:** nothing")]
    nb.cells = made
    path = Path(path).with_suffix(".ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    jupytext.write(nb, str(path.with_suffix(".md")), fmt="md:myst")
    return path


def _mini_root(tmp_path: Path, chapters: dict[str, list[tuple[str, str]]], toc_extra: str = "") -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    entries = "".join(f"  - file: book/executed/{n}\n" for n in chapters) + toc_extra
    (tmp_path / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    for name, cells in chapters.items():
        if cells is not None:
            _write_chapter(tmp_path / "chapters" / name, cells)
    return tmp_path


def test_chapter_rules_pass_and_break_loudly(tmp_path):
    path = _write_chapter(tmp_path / "a", [("md", "# Title"), ("code", "x = 1")],
                          parameters='profile = "auto"\nsteps = 3')
    assert book.check_chapter(path) == []
    raw = json.loads(path.read_text())
    raw["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    raw["cells"][3]["execution_count"] = 1
    raw["metadata"].pop("kernelspec")
    raw["metadata"].pop("jupytext")
    raw["cells"][2]["source"] = "steps = 3"
    path.write_text(json.dumps(raw))
    problems = " | ".join(book.check_chapter(path))
    for expected in ("kernelspec", "outputs", "must set profile", "jupytext.formats"):
        assert expected in problems, expected


@pytest.mark.parametrize("drop, missing", [("## Summary", "summary"), ("**Read next:**", "what next"),
                                           ("**What you need.**", "prerequisites"), ("## A section", "a section")])
def test_skeleton_parts_are_required_in_order(tmp_path, drop, missing):
    path = _write_chapter(tmp_path / "a", [("md", "# Title")])
    raw = json.loads(path.read_text())
    for c in raw["cells"]:
        src = "".join(c["source"])
        c["source"] = src.replace(drop, "Plain text")
    path.write_text(json.dumps(raw))
    assert any(f"needs {missing}" in p for p in book.check_chapter(path))


def test_skeleton_out_of_order_is_a_problem(tmp_path):
    path = _write_chapter(tmp_path / "a", [("md", "# Title\n\n**Read next:** too early")], skeleton=False)
    raw = json.loads(path.read_text())
    raw["cells"].append({"cell_type": "markdown", "id": "late", "metadata": {}, "source": "**Overview.** x\n\n**What you need.** y"})
    path.write_text(json.dumps(raw))
    assert any("needs what next" in p or "needs a section" in p for p in book.check_chapter(path))


def test_pair_check_finds_every_kind_of_drift(tmp_path):
    """Edited source, changed tags, an added cell: each is reported with the fix; a clean pair is []."""
    ipynb = _write_chapter(tmp_path / "c", [("md", "# T"), ("code", "y = 2")])
    md = ipynb.with_suffix(".md")
    assert book.pair_problems(md, ipynb) == []
    clean = md.read_text()
    md.write_text(clean.replace("y = 2", "y = 3"))
    assert any("source differs" in p and "jupytext --sync" in p for p in book.pair_problems(md, ipynb))
    md.write_text(clean.replace(":tags: [parameters]", ":tags: [parameters, hide-input]"))
    assert any("tags differ" in p or "cell 2 tags" in p for p in book.pair_problems(md, ipynb))
    md.write_text(clean + "\nOne more paragraph, in a new cell.\n\n+++\n\nAnd another.\n")
    assert any("cells" in p for p in book.pair_problems(md, ipynb))
    md.unlink()
    assert "missing" in book.pair_problems(md, ipynb)[0]


def test_pair_hash_covers_both_files(tmp_path):
    root = _mini_root(tmp_path, {"01_a": [("md", "# A")]})
    before = book.pair_sha256("01_a", root)
    md, ipynb = book.chapter_pair("01_a", root)
    md.write_text(md.read_text() + "\n")
    assert book.pair_sha256("01_a", root) != before


def test_execute_refuses_an_out_of_sync_pair(tmp_path):
    root = _mini_root(tmp_path, {"01_a": [("md", "# A"), ("code", "x = 1")]})
    md, _ = book.chapter_pair("01_a", root)
    md.write_text(md.read_text().replace("x = 1", "x = 2"))
    with pytest.raises(book.ChapterError, match="jupytext --sync"):
        book.execute_chapters("smoke", root=root, log=lambda m: None)
    assert not (root / "book/executed/01_a.ipynb").exists()


def test_toc_names_missing_sources_and_pages(tmp_path):
    root = _mini_root(tmp_path, {"01_a": [("md", "# A")], "02_b": None}, toc_extra="  - file: book/nowhere\n")
    assert book.toc_chapters(root) == ["01_a", "02_b"]
    with pytest.raises(book.BookBuildError) as err:
        book.check_toc(root, need_staged=False)
    msg = str(err.value)
    assert "chapters/02_b.ipynb does not exist" in msg and "book/nowhere" in msg and "01_a" not in msg
    with pytest.raises(book.BookBuildError, match="01_a.ipynb is not staged"):
        book.check_toc(root, need_staged=True)


def test_execute_stages_chapters_and_names_failures(tmp_path):
    root = _mini_root(tmp_path, {
        "01_ok": [("md", "# OK"), ("code", "import os\nprint(profile, train_tokens, os.environ['ROUTING_LAWS_CHARTS'])")],
        "02_bad": [("md", "# Bad"), ("code", "raise RuntimeError('chapter exploded')")],
    })
    nb1 = root / "chapters" / "01_ok.ipynb"
    _write_chapter(nb1, [("md", "# OK"), ("code", "import os\nprint(profile, train_tokens, os.environ['ROUTING_LAWS_CHARTS'])")],
                   parameters='profile = "auto"\ntrain_tokens = 1')
    logs = []
    with pytest.raises(book.ChapterError) as err:
        book.execute_chapters("smoke", root=root, log=logs.append)
    msg = str(err.value)
    assert "1 of 2" in msg and "chapters/02_bad.ipynb" in msg and "chapter exploded" in msg
    assert "02_bad.failed.ipynb" in msg and (root / "book/executed/02_bad.failed.ipynb").is_file()
    assert not (root / "book/executed/02_bad.ipynb").exists()
    import nbformat

    staged = nbformat.read(str(root / "book/executed/01_ok.ipynb"), as_version=4)
    out = "".join(o.get("text", "") for c in staged.cells if c.cell_type == "code" for o in c.outputs)
    assert out.strip() == f"smoke {book.PROFILES['smoke']['train_tokens']} html"
    assert staged.metadata["routing_laws"]["profile"] == "smoke"
    assert "remove-cell" in staged.cells[2].metadata["tags"]  # the defaults papermill overrode
    assert book.stale_chapters(root) == []
    md1 = nb1.with_suffix(".md")
    md1.write_text(md1.read_text().replace("# OK", "# OK, edited"))  # editing the text alone is a change
    assert book.stale_chapters(root) == ["01_ok"]
    with pytest.raises(ValidationError, match="not in _toc.yml"):
        book.execute_chapters("smoke", ["03_missing"], root=root)


def test_cli_rejects_unknown_chapter_in_one_line(capsys):
    from routing_laws.cli import main

    assert main(["book", "--profile", "smoke", "--only", "no_such_chapter", "--no-build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_chapter" in err[0]


def test_repository_book_is_consistent():
    """Every committed chapter is in the toc, follows the notebook rules, and every toc page exists."""
    listed = set(book.toc_chapters(ROOT))
    for src in sorted((ROOT / "chapters").glob("*.ipynb")):
        assert src.stem in listed, f"{src.name} is not listed in _toc.yml as book/executed/{src.stem}"
        assert book.check_chapter(src) == [], src.name
    book.check_toc(ROOT, need_staged=False)


@pytest.mark.parametrize("name", book.toc_chapters(ROOT))
def test_repository_chapter_pairs_are_in_sync(name):
    """Each chapters/<name>.md says exactly what chapters/<name>.ipynb holds (fix: make sync)."""
    md, ipynb = book.chapter_pair(name, ROOT)
    assert book.pair_problems(md, ipynb) == []
    assert sorted(p.stem for p in (ROOT / "chapters").glob("*.md")) == sorted(book.toc_chapters(ROOT))


@pytest.mark.parametrize("name", book.toc_chapters(ROOT))
def test_repository_chapters_open_in_colab(name):
    """A Colab link to this very notebook, a first code cell that installs the project there (hidden
    from the book), the plumbing cell folded, and a time-to-run line for every profile."""
    import nbformat

    nb = nbformat.read(str(ROOT / "chapters" / f"{name}.ipynb"), as_version=4)
    assert book.colab_url(name) in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == book.setup_cell(), f"first code cell of {name} must be book.setup_cell()"
    assert code[0].metadata.get("tags") == ["remove-cell"]
    assert "parameters" in code[1].metadata.get("tags", [])
    assert "hide-input" in code[2].metadata.get("tags", [])
    timing = [ln for ln in nb.cells[0].source.split("\n\n") if ln.startswith("**Time to run.**")]
    assert len(timing) == 1, "the first cell needs one paragraph starting **Time to run.**"
    assert all(re.search(rf"\b{p}\b", timing[0]) for p in ("smoke", "cpu", "gpu")), timing[0]
    assert "pip install -U" not in "".join(c.source for c in nb.cells)


# --------------------------------------------------------------------------- Colab and plain installs
def _fake_clone(where: Path) -> Path:
    (where / "data" / "paper").mkdir(parents=True)
    (where / "pyproject.toml").write_text("[project]\nname = 'routing-laws'\n")
    (where / "constraints.txt").write_text("jax==0.10.2\n")
    return where


def test_colab_bootstrap_installs_the_clone_with_its_pins(tmp_path):
    clone, calls, env = _fake_clone(tmp_path / "routing-laws"), [], {}
    cmd = book.colab_bootstrap(clone, run=lambda c, check: calls.append((c, check)), gpu=False, environ=env)
    assert calls == [(cmd, True)]
    assert cmd[1:4] == ["-m", "pip", "install"] and "-U" not in cmd and "--upgrade" not in cmd
    assert cmd[cmd.index("-c") + 1] == str(clone.resolve() / "constraints.txt")
    assert cmd[-2:] == ["-e", str(clone.resolve())] and env[io_utils.ROOT_ENV] == str(clone.resolve())
    gpu_cmd = book.colab_bootstrap(clone, run=lambda c, check: None, gpu=True, environ={})
    assert gpu_cmd[-1] == f"{clone.resolve()}[cuda12]"
    with pytest.raises(ValidationError, match="constraints.txt"):
        (clone / "constraints.txt").unlink()
        book.colab_bootstrap(clone, run=lambda c, check: pytest.fail("must not install"), environ={})


def test_setup_cell_does_nothing_where_the_project_is_installed(monkeypatch):
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail(f"ran {a}"))
    exec(book.setup_cell(), {})  # routing_laws is importable here, as in the book build


def test_setup_cell_clones_then_bootstraps_where_it_is_missing(monkeypatch, tmp_path):
    """Colab: find_spec says no routing_laws; the cell clones (faked: no network) and installs the
    clone through colab_bootstrap with the pins."""
    import importlib.util
    import subprocess
    import sys

    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            _fake_clone(tmp_path / cmd[-1])

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    # the cell sets ROUTING_LAWS_ROOT in os.environ: set then delete it through monkeypatch so that
    # teardown restores the variable's absence (repo_root reads it; a leak would move every later test)
    monkeypatch.setenv(io_utils.ROOT_ENV, "placeholder")
    monkeypatch.delenv(io_utils.ROOT_ENV)
    monkeypatch.setattr(book, "shutil", type("S", (), {"which": staticmethod(lambda name: None)}))
    exec(book.setup_cell(), {})
    assert calls[0][:2] == ["git", "clone"] and calls[0][-2:] == [io_utils.REPO_URL, "routing-laws"]
    assert calls[1][2:4] == ["pip", "install"] and "constraints.txt" in calls[1][calls[1].index("-c") + 1]
    assert sys.path[0] == "routing-laws/lib"
    assert os.environ[io_utils.ROOT_ENV] == str(tmp_path / "routing-laws")


def test_colab_url_names_the_notebook():
    assert book.colab_url("01_routing", "https://github.com/a/b.git").endswith("/github/a/b/blob/main/chapters/01_routing.ipynb")
    with pytest.raises(ValidationError, match="repo_url"):
        book.colab_url("01_routing", "https://example.org/x")
