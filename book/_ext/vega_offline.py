"""Sphinx extension: serve vega + vega-lite + vega-embed from the book's own ``_static``, never a CDN.

What it does, and why:
- At ``config-inited`` it writes ``vega-offline.js``: the vl-convert-python bundle of vega, vega-lite and
  vega-embed for the Vega-Lite version the installed altair targets, wrapped in an IIFE (the bundle's
  top-level ``const _`` would otherwise clash with Sphinx's global ``_``). The bundle defines
  ``window.vega``, ``window.vegaLite`` and ``window.vegaEmbed``. It is generated at build time (no npm,
  no committed JavaScript, no network) and cached in ``_build/_vega_static`` keyed by the versions,
  because generating it takes ~6 s.
- It adds that file to every page's ``<head>`` as a classic blocking script, so charts drawn by the
  project's ``offline`` altair renderer (``routing_laws.charts``) find ``window.vegaEmbed``.
- Fallback for notebooks that forgot ``routing_laws.charts.enable_offline()``: it presets
  ``VEGA_DEBUG`` with the versions altair's default HTML template asks for, so that template skips its
  CDN loader and uses ``window.vegaEmbed``. (That depends on altair's template internals; the browser
  test still flags such pages because their HTML names the CDN.)
- It drops sphinx-thebe's assets from every page (they name unpkg.com; thebe is off in _config.yml).
"""

from __future__ import annotations

import json
from pathlib import Path

from routing_laws.io_utils import atomic_write_text  # the book builds in the project's venv

BUNDLE_NAME = "vega-offline.js"
STAMP_NAME = "vega-offline.stamp"
CSS_NAME = "vega-offline.css"

_CSS = """/* charts from routing_laws.charts: never wider than the text column */
.altair-chart { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1em 0; }
.altair-chart .vega-embed { max-width: 100%; }
/* tables from routing_laws.tables.Table: room between columns, numbers right-aligned, labels left */
table.routing-laws-table th, table.routing-laws-table td { padding: 0.15em 0.45em; text-align: right; }
table.routing-laws-table td:first-child, table.routing-laws-table th:first-child { text-align: left; }
/* narrow enough for the 1280 px layout: small type, headers wrap (also at '_' in knob names) */
table.routing-laws-table { font-size: 0.8em; }
table.routing-laws-table th { white-space: normal; overflow-wrap: anywhere; vertical-align: bottom; }
table.routing-laws-table td:nth-child(-n+2) { white-space: nowrap; }  /* labels: router, size */
table.routing-laws-table caption { caption-side: top; text-align: left; font-weight: bold; }
/* no horizontal scroll at a 1280 px window: long code lines and printouts wrap inside the column */
div.cell div.highlight pre, div.cell_output pre, div.output pre {
  white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def versions() -> tuple[str, str, str]:
    """(vega, vega-lite, vega-embed) versions the installed altair emits, e.g. ('6', '6.4.1', '7')."""
    import altair as alt

    try:
        return str(alt.VEGA_VERSION), str(alt.VEGALITE_VERSION), str(alt.VEGAEMBED_VERSION)
    except AttributeError as e:  # pragma: no cover - only with an altair that moved these names
        raise RuntimeError(f"vega_offline: altair {alt.__version__} does not expose {e.name}; "
                           "pin altair to the version in constraints.txt") from None


def bundle_version(vegalite_version: str, available: list[str]) -> str:
    """The vl-convert bundle version (``'6.4'``) to use for ``vegalite_version`` (``'6.4.1'``).

    Exact major.minor if vl-convert ships it, else the newest of the same major that is not newer;
    anything else would draw charts with a Vega-Lite the specs were not written for.
    """
    major, minor = (int(p) for p in vegalite_version.split(".")[:2])
    parsed = sorted((tuple(int(p) for p in v.split(".")[:2]), v) for v in available)
    same_major = [(mm, v) for mm, v in parsed if mm[0] == major and mm[1] <= minor]
    if not same_major:
        raise RuntimeError(
            f"vega_offline: vl-convert-python ships Vega-Lite {', '.join(available)} but altair needs "
            f"{vegalite_version}; install the vl-convert-python version in constraints.txt")
    return same_major[-1][1]


def write_bundle(static_dir: Path) -> Path:
    """Write (or reuse) ``static_dir/vega-offline.js`` for the installed altair; return its path."""
    import vl_convert as vlc

    _, vl, _ = versions()
    vl_bundle = bundle_version(vl, list(vlc.get_vegalite_versions()))
    stamp = json.dumps({"vegalite": vl, "bundle": vl_bundle,
                        "vl_convert": getattr(vlc, "__version__", "?"), "wrapper": 1}, sort_keys=True)
    static_dir.mkdir(parents=True, exist_ok=True)
    js_path, stamp_path = static_dir / BUNDLE_NAME, static_dir / STAMP_NAME
    if not (js_path.is_file() and stamp_path.is_file() and stamp_path.read_text() == stamp):
        js = vlc.javascript_bundle(vl_version=vl_bundle)
        text = "/* vega + vega-lite + vega-embed, bundled by vl-convert-python (" + vl_bundle + ") */\n" \
               "(function(){\n" + js + "\n})();\n"
        _atomic_write(js_path, text)
        _atomic_write(stamp_path, stamp)
    _atomic_write(static_dir / CSS_NAME, _CSS)
    return js_path


def _atomic_write(path: Path, text: str) -> None:
    """The library's atomic writer, skipped when the file already holds ``text`` (keeps mtimes)."""
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)


def _config_inited(app, config) -> None:
    static = Path(app.outdir).parent / "_vega_static"
    write_bundle(static)
    config.html_static_path.append(str(static))


def _is_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", asset) or "")
    body = str((getattr(asset, "attributes", None) or {}).get("body", ""))
    return "sphinx-thebe" in name or "THEBE_JS_URL" in body or "unpkg.com/thebe" in name


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    """sphinx-thebe (always loaded by Jupyter Book 1) names a CDN URL on every page, and declares it
    twice (a console error). Thebe is off in _config.yml, so its assets are dropped from every page."""
    for key in ("script_files", "css_files"):
        if key in context:
            context[key][:] = [a for a in context[key] if not _is_thebe(a)]


def setup(app):
    vega, vl, embed = versions()
    app.connect("config-inited", _config_inited)
    app.add_js_file(BUNDLE_NAME, priority=200)  # classic blocking <script> in <head>
    preset = {"vega_version": vega, "vegalite_version": vl, "vegaembed_version": embed}
    app.add_js_file(None, body="var VEGA_DEBUG = " + json.dumps(preset) + ";", priority=201)
    app.add_css_file(CSS_NAME)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
