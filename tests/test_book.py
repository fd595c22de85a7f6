"""Unit tests of the book machinery: offline chart renderer and builders, profiles, toc and staging."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from routing_laws import book, charts
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
        label = charts.si(v)
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
def _mini_root(tmp_path: Path, chapters: dict[str, list[tuple[str, str]]], toc_extra: str = "") -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    entries = "".join(f"  - file: book/executed/{n}\n" for n in chapters) + toc_extra
    (tmp_path / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    for name, cells in chapters.items():
        if cells is not None:
            book.write_notebook(book.new_notebook(cells), tmp_path / "chapters" / f"{name}.ipynb")
    return tmp_path


def test_new_notebook_follows_the_rules(tmp_path):
    nb = book.new_notebook([("md", "# Title"), ("code", "x = 1")], parameters='profile = "auto"\nsteps = 3')
    assert nb.cells[1].metadata["tags"] == ["parameters"] and nb.cells[0].cell_type == "markdown"
    path = book.write_notebook(nb, tmp_path / "a.ipynb")
    assert book.check_chapter(path) == []
    raw = json.loads(path.read_text())
    raw["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    raw["metadata"].pop("kernelspec")
    raw["cells"][1]["source"] = "steps = 3"
    path.write_text(json.dumps(raw))
    problems = " | ".join(book.check_chapter(path))
    assert "kernelspec" in problems and "outputs" in problems and "must set profile" in problems


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
    nb1.write_text(nb1.read_text().replace('profile = \\"auto\\"', 'profile = \\"auto\\"\\ntrain_tokens = 1'))
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
    assert "remove-cell" in staged.cells[1].metadata["tags"]
    assert book.stale_chapters(root) == []
    nb1.write_text(nb1.read_text().replace("# OK", "# OK, edited"))
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
