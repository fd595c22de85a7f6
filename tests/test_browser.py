"""The built book in headless Chromium with the network disabled: every chart draws, nothing remote.

Builds the book once per session with the smoke profile (``routing-laws book --profile smoke``), or
reuses ``_build/html`` when ``ROUTING_LAWS_BOOK_BUILT=1``. ``ROUTING_LAWS_BOOK_ROOT`` points at another
book root (used to test the pipeline on a stand-in chapter). Every page is opened in a 1280 px wide
window; a script added to a copy of the page measures, once the charts have drawn, every code cell,
output, table and chart for content wider than its box (no horizontal scroll allowed), and a full-page
screenshot of every page goes to ``_build/screenshots/<page>.png`` (``ROUTING_LAWS_SCREENSHOTS=DIR``
elsewhere) for reviewers. Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped with
that reason when it is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from routing_laws import book, charts
from routing_laws.io_utils import repo_root

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get update && apt-get install -y chromium)")
CDN_RE = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs\.cloudflare|//cdn\.|fonts\.googleapis|requirejs\.org")
ASSET_RE = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*\shref|img[^>]*\ssrc)="([^"]+)"')
ALTAIR_ERROR_RE = re.compile(r'<div class="error"[^>]*>\s*(Error loading script|Javascript Error)[^<]*')
SVG_MARKS_RE = re.compile(r'<svg[^>]*class="[^"]*\bmarks\b')
OFFLINE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # no network: every host resolves to nothing and every request goes to a dead proxy
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
]
WINDOW_W = 1280
MAX_SHOT_H = 16000
# Elements that must not scroll sideways at WINDOW_W: code cells, their outputs, tables, charts, the page.
OVERFLOW_SELECTORS = ("div.cell div.highlight pre", "div.cell_output", "div.cell_output pre", "div.output",
                      "table", ".altair-chart", "main", "article")
MEASURE_JS = """<script>window.addEventListener("load", function () { setTimeout(function () {
  var sel = %s, bad = [];
  sel.forEach(function (s) { document.querySelectorAll(s).forEach(function (el) {
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      bad.push({sel: s, scroll: el.scrollWidth, client: el.clientWidth,
                text: (el.innerText || "").trim().slice(0, 80)}); }); });
  var d = document.documentElement;
  if (d.scrollWidth > d.clientWidth + 1) bad.push({sel: "page", scroll: d.scrollWidth, client: d.clientWidth, text: ""});
  var out = document.createElement("pre"); out.id = "routing-laws-overflow";
  out.textContent = JSON.stringify({bad: bad, height: d.scrollHeight});
  document.body.appendChild(out); }, 4000); });</script>""" % json.dumps(list(OVERFLOW_SELECTORS))
REPORT_RE = re.compile(r'<pre id="routing-laws-overflow">(.*?)</pre>', re.S)


@pytest.fixture(scope="session")
def html_dir() -> Path:
    root = Path(os.environ.get("ROUTING_LAWS_BOOK_ROOT") or repo_root())
    out = root / "_build" / "html"
    if os.environ.get("ROUTING_LAWS_BOOK_BUILT") == "1":
        if not (out / "index.html").is_file():
            pytest.fail(f"ROUTING_LAWS_BOOK_BUILT=1 but {out}/index.html is missing (run make book)")
        return out
    book.execute_chapters("smoke", root=root)
    book.build_book(root)
    return out


def _pages(html_dir: Path) -> list[Path]:
    skip = {"_static", "_sources", "_images", "reports", "_downloads"}
    return sorted(p for p in html_dir.rglob("*.html") if not skip & set(p.relative_to(html_dir).parts))


def _chromium(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def _screenshot_dir(html_dir: Path) -> Path:
    return Path(os.environ.get("ROUTING_LAWS_SCREENSHOTS") or html_dir.parent / "screenshots")


def _visit(page: Path, html_dir: Path, shots: Path) -> dict:
    """Open ``page`` (the DOM after its scripts ran, console lines), a measuring copy of it (overflow
    report and page height), then screenshot it whole at WINDOW_W."""
    proc = _chromium(["--dump-dom", f"--window-size={WINDOW_W},900", page.as_uri()])
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    probe = page.with_name(f".{page.stem}.measure.html")  # beside the page, so relative assets load
    try:
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE_JS + "</body>"), encoding="utf-8")
        measured = _chromium(["--dump-dom", f"--window-size={WINDOW_W},900", probe.as_uri()])
    finally:
        probe.unlink(missing_ok=True)
    m = REPORT_RE.search(measured.stdout)
    report = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                        .replace("&amp;", "&")) if m else None
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "_".join(page.relative_to(html_dir).with_suffix(".png").parts)
    height = min(max(int((report or {}).get("height", 2400)), 900), MAX_SHOT_H)
    _chromium([f"--screenshot={shot}", f"--window-size={WINDOW_W},{height}", page.as_uri()])
    return {"dom": proc.stdout, "console": console, "rc": proc.returncode, "overflow": report, "shot": shot}


def test_no_cdn_or_remote_assets_in_built_html(html_dir):
    bad = []
    for page in html_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        bad += [f"{page.relative_to(html_dir)}: ...{text[max(m.start() - 30, 0):m.end() + 30]}..."
                for m in CDN_RE.finditer(text)]
        bad += [f"{page.relative_to(html_dir)}: remote asset {u}" for u in ASSET_RE.findall(text)
                if urlsplit(u).scheme in ("http", "https") or u.startswith("//")]
    assert not bad, "remote references in the built book:\n" + "\n".join(sorted(set(bad))[:30])


def test_no_cdn_in_static_files_except_vendored_mathjax(html_dir):
    """JS/CSS may name a CDN only inside MathJax's own files: its speech-rule engine (loaded only if
    a reader turns on speech in the MathJax menu) and latest.js (a CDN loader the book never uses)."""
    bad = []
    for path in html_dir.rglob("*"):
        if path.suffix in (".js", ".css", ".json") and path.is_file():
            rel = path.relative_to(html_dir)
            if rel.parts[:2] == ("_static", "mathjax"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            bad += [f"{rel}: ...{text[max(m.start() - 30, 0):m.end() + 30]}..." for m in CDN_RE.finditer(text)]
    assert not bad, "CDN references in static files:\n" + "\n".join(bad[:30])


def test_local_assets_exist(html_dir):
    missing = []
    for page in _pages(html_dir):
        for url in ASSET_RE.findall(page.read_text(encoding="utf-8", errors="replace")):
            parts = urlsplit(url)
            if parts.scheme or url.startswith(("//", "data:", "#")) or not parts.path:
                continue
            if not (page.parent / parts.path).resolve().is_file():
                missing.append(f"{page.relative_to(html_dir)} -> {url}")
    assert not missing, "pages reference files that are not in the build:\n" + "\n".join(missing[:30])


@pytest.fixture(scope="session")
def visits(html_dir) -> dict[Path, dict]:
    """Every page opened once (two browsers at a time; ~4 s each on 2 cores)."""
    pages, shots = _pages(html_dir), _screenshot_dir(html_dir)
    with ThreadPoolExecutor(max_workers=2) as pool:
        visited = dict(zip(pages, pool.map(lambda p: _visit(p, html_dir, shots), pages)))
    print(f"\nscreenshots of {len(visited)} pages at {WINDOW_W} px: {shots}")
    return visited


def test_every_page_draws_every_chart_offline(html_dir, visits):
    results = visits
    assert any(p.name == "index.html" for p in results)
    problems, total = [], 0
    for page, res in results.items():
        rel = page.relative_to(html_dir)
        expected = charts.count_charts(page.read_text(encoding="utf-8"))
        drawn = len(SVG_MARKS_RE.findall(res["dom"]))
        total += expected
        if res["rc"] != 0 or "<body" not in res["dom"]:
            problems.append(f"{rel}: chromium exit {res['rc']}, no DOM")
        if drawn != expected:
            problems.append(f"{rel}: {drawn} of {expected} charts drew (svg.marks)")
        if ALTAIR_ERROR_RE.search(res["dom"]):  # altair's template shows load/JS errors in a red div
            problems.append(f"{rel}: altair error in the page: {ALTAIR_ERROR_RE.search(res['dom']).group(0)}")
        problems += [f"{rel}: console: {ln.split(']', 1)[-1].strip()}" for ln in res["console"]
                     if "Uncaught" in ln or '"chart altair-' in ln]
    assert not problems, "\n".join(problems)
    assert total > 0, "the built book has no charts at all"


def test_math_is_typeset_offline(visits):
    intro = next((p for p in visits if p.name == "intro.html"), None)
    if intro is None:
        pytest.skip("no intro page in this build")
    assert "mjx-container" in visits[intro]["dom"], "MathJax did not typeset the intro page offline"


def test_no_page_scrolls_sideways_at_1280px(html_dir, visits):
    """At a 1280 px window no code cell, output, table or chart is wider than its box, and the page
    itself does not scroll sideways (1 px tolerance for rounding)."""
    problems = []
    for page, res in visits.items():
        rel = page.relative_to(html_dir)
        if res["overflow"] is None and "http-equiv=\"Refresh\"" in page.read_text(encoding="utf-8")[:300]:
            continue  # index.html: a redirect to the intro, nothing to measure
        if res["overflow"] is None:
            problems.append(f"{rel}: the measuring script did not report (page scripts failed?)")
            continue
        problems += [f"{rel}: {b['sel']} is {b['scroll']} px wide in a {b['client']} px box: {b['text']!r}"
                     for b in res["overflow"]["bad"]]
    assert not problems, "horizontal overflow at 1280 px:\n" + "\n".join(problems[:40])


def test_every_page_has_a_screenshot(visits):
    missing = [str(res["shot"]) for res in visits.values() if not Path(res["shot"]).is_file()]
    assert not missing, "no screenshot written: " + ", ".join(missing)
