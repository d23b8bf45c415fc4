"""The course's website, built and read in a real browser: every page loads, every link resolves.

The site is built by ``docs/build.py --cached-only`` into a temporary folder: no notebook runs here
(running them takes minutes, and the tests of ``notebooks/`` do it). A notebook page shows the outputs
that the documented build (``python docs/build.py``) left in its execution cache,
``docs/_build/.jupyter_cache``, for the notebook's current code, and no outputs otherwise; the check
of the notebooks' figures is skipped, saying so, where no notebook has cached outputs.

Headless Chromium (Debian's, driven by Playwright as in ``tests/test_browser.py``, with a fresh
profile) then opens every page from a local HTTP server and checks that it loads without console
errors or requests to any other host, that every internal link and anchor resolves, that the API
page lists ``SimpleNet.fit``, ``SimpleNet.predict`` and the metrics, and that the tables of results
show what ``results/*.json`` holds. The functions behind those tables are checked by hand first,
without a browser. The browser tests are skipped unless /usr/bin/chromium exists
(``.ci/browser-setup.sh`` installs it) and playwright imports.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUILD_S = 300  # with the notebooks left unexecuted the build takes well under a minute on two cores

PLAYWRIGHT_MISSING = ""
try:
    from playwright.sync_api import sync_playwright
except ImportError as error:  # pragma: no cover - depends on the machine
    sync_playwright = None
    PLAYWRIGHT_MISSING = str(error)



def needs_browser(test):
    """Skipped, saying why, without Chromium or playwright."""
    test = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: run .ci/browser-setup.sh")(test)
    return pytest.mark.skipif(sync_playwright is None, reason=f"playwright does not import ({PLAYWRIGHT_MISSING})")(test)


def _site_extension():
    pytest.importorskip("sphinx", reason='the site needs the docs tools: pip install -e ".[docs]"')
    pytest.importorskip("myst_nb", reason='the site needs the docs tools: pip install -e ".[docs]"')
    sys.path.insert(0, str(DOCS / "_ext"))
    import simplenet_site

    return simplenet_site


# ------------------------------------------------------------------------------------------ by hand


def _suite_file(folder: Path, name: str, runs: dict, command: str = "python benchmarks/suite.py") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"command": command, "seeds": [0, 1, 2], "runs": runs}))


def test_suite_table_by_hand(tmp_path):
    site = _site_extension()
    _suite_file(tmp_path, "suite_a", {
        "toy": [{"aupro": 0.90, "image_auroc": 1.0}, {"aupro": 0.92, "image_auroc": 1.0},
                {"aupro": 0.94, "image_auroc": 0.97}],
        "no_masks": [{"aupro": None, "image_auroc": 0.80}, {"aupro": None, "image_auroc": 0.90},
                     {"aupro": None, "image_auroc": 0.85}],
        "brick": [{"aupro": 0.5, "image_auroc": 0.5}] * 3,  # a demo texture: left out by default
    })
    runs = site.suite_runs("suite_a", tmp_path)
    header, rows, n_mean = site.suite_table(runs, site.parse_columns("image_auroc/aupro"))
    assert header == ["set", "image AUROC / AUPRO"]
    # AUPRO 0.90, 0.92, 0.94: mean 0.92, sample std sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02.
    # Image AUROC 1, 1, 0.97: mean 0.99, sample std sqrt((0.01^2 * 2 + 0.02^2) / 2) = sqrt(0.0003) = 0.017.
    assert rows[0] == ["toy", "0.990 ± 0.017 / 0.920 ± 0.020"]
    assert rows[1] == ["no_masks", "0.850 ± 0.050 / -"]
    # The mean row: image AUROC (0.99 + 0.85) / 2 = 0.92; AUPRO over the one set with masks.
    assert rows[2] == ["mean", "0.920 / 0.920"] and n_mean == 1 and len(rows) == 3


def test_suite_table_of_two_runs_with_a_time_ratio(tmp_path):
    site = _site_extension()
    _suite_file(tmp_path, "suite_a", {"toy": [{"seconds_features": 1.0, "seconds_train": 5.0}] * 2})
    _suite_file(tmp_path, "suite_b", {"toy": [{"seconds_features": 1.0, "seconds_train": 2.0},
                                              {"seconds_features": 1.0, "seconds_train": 1.0}]})
    runs = [(name, run) for name, (_, run) in zip(["A", "B"], site.suite_runs("suite_a", tmp_path)
                                                  + site.suite_runs("suite_b", tmp_path))]
    header, rows, n_mean = site.suite_table(runs, site.parse_columns("fit_seconds:1"), ratio="fit_seconds")
    assert header == ["set", "run", "features + training s"]
    # A: 6 s twice (std 0); B: 3 s and 2 s (mean 2.5, sample std 0.707); 6 / 2.5 = 2.40x.
    assert rows == [["toy", "A", "6.0 ± 0.0"], ["toy", "B", "2.5 ± 0.7"], ["toy", "A / B", "2.40x"],
                    ["mean", "A", "6.0"], ["mean", "B", "2.5"]]
    assert n_mean == 2


def test_result_lookup_by_hand(tmp_path):
    site = _site_extension()
    (tmp_path / "budget.json").write_text(json.dumps(
        {"rows": [{"set": "cookie", "hours": 6.98}, {"set": "solar", "hours": 67.34}], "n": 5}))
    assert site.quote("budget rows[set=solar].hours .0f", tmp_path) == "67"
    assert site.quote("budget.json rows[0].hours", tmp_path) == "6.980"
    assert site.quote("budget n", tmp_path) == "5"
    with pytest.raises(site.ResultsError, match="nothing at 'rows\\[set=grass\\]'"):
        site.quote("budget rows[set=grass].hours", tmp_path)
    with pytest.raises(site.ResultsError, match="no such results file"):
        site.quote("missing n", tmp_path)


def test_notebooks_are_copied_in_and_stale_copies_removed(tmp_path):
    site = _site_extension()
    source, target = tmp_path / "notebooks", tmp_path / "docs" / "notebooks"
    (source / "solutions").mkdir(parents=True)
    (source / "01_x.ipynb").write_text("{}")
    (source / "solutions" / "01_solutions.ipynb").write_text("{}")
    (source / ".ipynb_checkpoints").mkdir()
    (source / ".ipynb_checkpoints" / "01_x-checkpoint.ipynb").write_text("{}")
    (target / "solutions").mkdir(parents=True)
    (target / "00_removed.ipynb").write_text("{}")
    copied = site.sync_notebooks(source, target)
    assert copied == ["01_x.ipynb", "solutions/01_solutions.ipynb"]
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "01_x.ipynb", "solutions/01_solutions.ipynb", "solutions/index.md"]


# ------------------------------------------------------------------------------------------ the site


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site, built with the notebooks' cached outputs only; its folder."""
    _site_extension()
    folder = tmp_path_factory.mktemp("site")
    output = folder / "html"
    start = time.perf_counter()
    # The build's own temporary files (importing torchvision makes a torchinductor folder) stay here.
    scratch = folder / "tmp"
    scratch.mkdir()
    done = subprocess.run([sys.executable, str(DOCS / "build.py"), "--cached-only", "--quiet", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=BUILD_S,
                          env=dict(os.environ, TMPDIR=str(scratch)))
    (folder / "build.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"the site did not build (see {folder / 'build.log'}):\n{done.stderr[-3000:]}"
    print(f"site built in {time.perf_counter() - start:.0f} s")
    return output


@pytest.fixture(scope="module")
def server(built_site):
    """An HTTP server of the built site on 127.0.0.1 (a free port); its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; one context for the module's tests."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1300, "height": 900})
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


class Visit:
    """A browser tab that opens pages of the site and records, per page, what went wrong: console
    errors, uncaught exceptions, failed requests, requests to any other host, a status other than 200."""

    def __init__(self, browser, base: str):
        self.base, self.problems = base, []
        self.page = browser.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        self.page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:", "about:"))
                     else self.problems.append(f"request outside the site: {r.url}"))

    def open(self, path: str):
        """Open ``path`` (relative to the site) and wait for its "load" event: every image, script and
        style sheet has arrived or failed. Returns the page."""
        self.problems = []
        response = self.page.goto(f"{self.base}/{path}", wait_until="load")
        if response is None or response.status != 200:
            self.problems.append(f"status {None if response is None else response.status}")
        return self.page

    def close(self):
        self.page.close()


def _pages(site: Path) -> list[str]:
    """Every page of the site (``_static/`` holds the theme's template fragments, not pages)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.relative_to(site).parts[0] != "_static")


_IDS: dict[Path, set[str]] = {}


def _ids(path: Path) -> set[str]:
    if path not in _IDS:
        _IDS[path] = set(re.findall(r'\sid="([^"]+)"', path.read_text(errors="replace")))
    return _IDS[path]


def _broken(site: Path, base: str, page: str, href: str) -> str | None:
    """Why ``href`` (absolute, on the site's server), linked from ``page``, does not resolve; None if it does."""
    parts = urlsplit(href)
    target = site / unquote(parts.path.removeprefix(urlsplit(base).path).lstrip("/"))
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{page}: link to {href}: no such file"
    if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
        return f"{page}: link to {href}: no anchor #{parts.fragment} in {target.relative_to(site)}"
    return None


LINKS = """() => [...document.querySelectorAll('a[href], link[href], img[src], script[src]')]
    .map(e => e.href || e.src).filter(u => u && !u.startsWith('data:') && !u.startsWith('javascript:'))"""


@needs_browser
def test_every_page_loads_and_every_link_resolves(built_site, server, browser):
    pages = _pages(built_site)
    expected = ["index.html", "install.html", "api.html", "cpu-default.html", "supersimplenet.html",
                "notebooks/README.html", "notebooks/07_thresholds.html", "notebooks/solutions/index.html"]
    assert set(expected) <= set(pages), f"missing pages: {sorted(set(expected) - set(pages))}"
    notebooks = sorted(p.relative_to(ROOT / "notebooks").with_suffix(".html").as_posix()
                       for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert {f"notebooks/{n}" for n in notebooks} <= set(pages), "a notebook has no page"
    problems, checked = [], 0
    visit = Visit(browser, server)
    try:
        for path in pages:
            hrefs = visit.open(path).evaluate(LINKS)
            problems += [f"{path}: {problem}" for problem in visit.problems]
            for href in hrefs:
                if href.startswith(server):
                    checked += 1
                    reason = _broken(built_site, server, path, href)
                    if reason:
                        problems.append(reason)
    finally:
        visit.close()
    print(f"{len(pages)} pages, {checked} internal links and resources checked")
    assert not problems, f"{len(problems)} problems, the first 20:\n" + "\n".join(problems[:20])


def _table(page, heading: str) -> list[list[str]]:
    """The rows (cell texts) of the first results table after the heading ``heading``."""
    return page.evaluate("""(heading) => {
        const section = [...document.querySelectorAll('section')].find(s => s.querySelector('h2')?.textContent.includes(heading));
        const table = section.querySelector('table.results-table');
        return [...table.querySelectorAll('tr')].map(r => [...r.querySelectorAll('th, td')].map(c => c.textContent.trim()));
    }""", heading)


@needs_browser
def test_api_page_lists_fit_predict_and_the_metrics(built_site, server, browser):
    visit = Visit(browser, server)
    try:
        visit.open("api.html")
        signatures = visit.page.locator("dl.py.method > dt").all_inner_texts()
        names = {re.match(r"\s*(\w+)\(", text).group(1) for text in signatures if re.match(r"\s*(\w+)\(", text)}
        assert {"fit", "predict"} <= names, f"the API page documents {sorted(names)} of SimpleNet"
        assert visit.page.locator("dl.py.class > dt", has_text="SimpleNet").count() >= 1
        links = visit.page.evaluate("() => [...document.querySelectorAll('a.reference.internal')].map(a => a.href)")
        for metric in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_from_normal"):
            target = [href for href in links if href.endswith(f"#simplenet_edu.evaluation.metrics.{metric}")]
            assert target, f"the API page does not link metrics.{metric}"
            assert _broken(built_site, server, "api.html", target[0]) is None
        assert not visit.problems, visit.problems
    finally:
        visit.close()


@needs_browser
def test_results_tables_show_the_results_json(server, browser):
    """The CPU default's table on its page is what results/suite_default.json holds (the mean ±
    sample std, computed here with the statistics module), not a copy."""
    suite = json.loads((ROOT / "results" / "suite_default.json").read_text())
    aupro = [row["aupro"] for row in suite["runs"]["hazelnut_toy"]]
    image = [row["image_auroc"] for row in suite["runs"]["hazelnut_toy"]]
    visit = Visit(browser, server)
    try:
        visit.open("cpu-default.html")
        rows = _table(visit.page, "On the development suite")
        row = next(r for r in rows if r[:2] == ["hazelnut_toy", "CPU default"])
        expected = (f"{statistics.mean(image):.3f} ± {statistics.stdev(image):.3f}",
                    f"{statistics.mean(aupro):.3f} ± {statistics.stdev(aupro):.3f}")
        assert row[2].startswith(expected[0]) and row[2].endswith(expected[1]), (row, expected)
        assert "results/suite_default.json" in visit.page.inner_text("main")
        assert not visit.problems, visit.problems
    finally:
        visit.close()


def _cached_image_outputs() -> dict[str, int]:
    """``{page: number of image outputs}`` of every notebook whose current code has outputs in the
    documented build's execution cache (the outputs its page shows)."""
    cache_path = DOCS / "_build" / ".jupyter_cache"
    if not (cache_path / "global.db").is_file():
        return {}
    import nbformat
    from jupyter_cache import get_cache

    cache, found = get_cache(str(cache_path)), {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        try:
            _, executed = cache.merge_match_into_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            continue
        outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
        page = "notebooks/" + path.relative_to(ROOT / "notebooks").with_suffix(".html").as_posix()
        found[page] = sum(1 for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {})))
    return found


@needs_browser
def test_notebook_pages_show_their_figures(built_site, server, browser):
    """Every notebook page with cached outputs shows, loaded and non-empty, every image output of its
    executed notebook; notebook 07's explorer is a still with a note on running it live."""
    executed = _cached_image_outputs()
    if not executed:
        pytest.skip("no notebook has outputs in docs/_build/.jupyter_cache for its current code: "
                    "run `python docs/build.py` first")
    problems = []
    visit = Visit(browser, server)
    try:
        for page_path, n_images in executed.items():
            page = visit.open(page_path)
            shown = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')]
                .map(i => ({ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0, src: i.src.slice(0, 80)}))""")
            loaded = sum(image["ok"] for image in shown)
            if loaded < n_images or len(shown) > loaded:
                problems.append(f"{page_path}: {loaded} of {len(shown)} images loaded, {n_images} image outputs; "
                                f"{[i for i in shown if not i['ok']][:3]}")
            if page_path == "notebooks/07_thresholds.html":
                still = page.locator(".widget-still", has_text="Threshold explorer")
                if not still.count():
                    problems.append("06: no still of the threshold explorer")
                else:
                    images = still.first.evaluate("s => [...s.querySelectorAll('img')].filter(i => i.naturalWidth > 0).length")
                    note = still.first.locator(".widget-still-note").inner_text()
                    if images < 2 or "jupyter lab" not in note:
                        problems.append(f"06: the explorer's still shows {images} images, note {note!r}")
            problems += [f"{page_path}: {problem}" for problem in visit.problems]
    finally:
        visit.close()
    print(f"{len(executed)} notebook pages with outputs checked, {sum(executed.values())} figures")
    assert not problems, "\n".join(problems[:20])
