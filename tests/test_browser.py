"""Notebook 07 in a real browser: JupyterLab, headless Chromium, and the explorer moved by keyboard.

What a learner does: open the notebook, Run > Run All Cells, focus the image-threshold slider, press
End (highest threshold) and Home (lowest). The confusion counts the widget shows must follow: at the
highest threshold nothing is flagged (TP = FP = 0), at the lowest everything is (FN = TN = 0). The
slider's stops are exact thresholds, so after the F1-max button its readout must be the F1-max
threshold itself, not a value rounded to a slider step.

Skipped unless /usr/bin/chromium exists (`.ci/browser-setup.sh` installs it) and playwright imports.
Playwright drives the system Chromium; its own browser download is never used. The screenshot's path
is printed (under $SIMPLENET_EDU_ARTIFACTS when set, else pytest's temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_thresholds.ipynb"
PORT = 8890
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 90
KERNEL_READY_S = 120
RUN_ALL_S = 300       # quick mode trains (or loads) the course model, then evaluates
WIDGET_UPDATE_S = 30

PLAYWRIGHT_MISSING = ""
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError as error:  # pragma: no cover - depends on the machine
    sync_playwright = None
    PLAYWRIGHT_MISSING = str(error)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: run .ci/browser-setup.sh"),
    pytest.mark.skipif(sync_playwright is None, reason=f"playwright does not import ({PLAYWRIGHT_MISSING})"),
]

# Every code cell has run (a number in its prompt, none pending) and the kernel is idle again.
ALL_CELLS_RAN = """() => {
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    return status !== null && status.dataset.status === 'idle' && prompts.length > 0
        && prompts.every(text => /\\[\\d+\\]/.test(text));
}"""


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab server on 127.0.0.1:PORT, no token, serving a copy of notebook 07; always stopped."""
    if not _port_is_free(PORT):
        pytest.fail(f"port {PORT} is already in use: another JupyterLab is running there")
    root, settings, workspaces = tmp_path / "root", tmp_path / "settings", tmp_path / "workspaces"
    root.mkdir()
    workspaces.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    # No news or update check: nothing reaches out, and no notification covers the page.
    plugin = settings / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True)
    (plugin / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, SIMPLENET_EDU_QUICK="1", JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), MPLBACKEND="module://matplotlib_inline.backend_inline")
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={PORT}",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={workspaces}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"]  # no PyPI queries
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}: see {tmp_path / 'jupyter.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/status", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s: see {tmp_path / 'jupyter.log'}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{PORT}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def _kernel_states(base: str) -> list[str]:
    """The execution state of each kernel of the server's sessions (the server's view, not the page's)."""
    with urllib.request.urlopen(f"{base}/api/sessions", timeout=5) as answer:
        return [session["kernel"]["execution_state"] for session in json.load(answer) if session.get("kernel")]


def _wait_for_kernel(page, base: str) -> None:
    """Until the notebook's kernel is started and idle, and the page says so; a kernel-selection
    dialog (shown when the page asks before the kernel specs arrive) is answered with the default."""
    deadline = time.monotonic() + KERNEL_READY_S
    while True:
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count() and dialog.first.is_visible():
            dialog.first.get_by_role("button", name="Select").click()
        states = _kernel_states(base)
        status_bar = page.locator(".jp-StatusBar-Widget", has_text="Idle")
        if states == ["idle"] and status_bar.count() and page.locator(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]').count():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the notebook's kernel was not idle within {KERNEL_READY_S} s (server says {states})")
        page.wait_for_timeout(500)


def _artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("SIMPLENET_EDU_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _counts(page) -> dict[str, int]:
    return {name: int(page.locator(f'[data-metric="{name}"]').first.inner_text()) for name in ("tp", "fp", "tn", "fn")}


def _wait_for_counts(page, expected: dict[str, int], what: str) -> dict[str, int]:
    """Poll the shown counts until those in ``expected`` match, for at most WIDGET_UPDATE_S."""
    deadline = time.monotonic() + WIDGET_UPDATE_S
    while True:
        counts = _counts(page)
        if all(counts[name] == value for name, value in expected.items()):
            return counts
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: expected {expected}, the widget shows {counts} after {WIDGET_UPDATE_S} s")
        page.wait_for_timeout(200)


def _readout(slider) -> str:
    return slider.locator(".widget-readout").first.inner_text().strip()


def _wait_for_readout(slider, expected: str, what: str) -> str:
    deadline = time.monotonic() + WIDGET_UPDATE_S
    while True:
        shown = _readout(slider)
        if shown == expected:
            return shown
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: expected the slider to read {expected!r}, it reads {shown!r}")
        slider.page.wait_for_timeout(200)


def test_explorer_in_jupyterlab(jupyter_lab, tmp_path):
    artifacts = _artifacts(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            try:
                page.goto(f"{jupyter_lab}/lab/tree/{NOTEBOOK.name}", wait_until="domcontentloaded")
                # Clicking before the notebook and its kernel are ready is the usual flake: wait for both.
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=KERNEL_READY_S * 1000)
                _wait_for_kernel(page, jupyter_lab)

                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
                try:
                    page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_ALL_S * 1000, polling=500)
                except PlaywrightTimeout:
                    errors = page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
                    pytest.fail(f"Run All did not finish within {RUN_ALL_S} s; stderr outputs: {errors[-3:]}")
                errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
                assert not errors, f"a notebook cell failed: {errors[0][:2000]}"

                slider = page.locator(".widget-slider", has=page.locator("label", has_text="image threshold")).first
                slider.wait_for(state="visible", timeout=WIDGET_UPDATE_S * 1000)
                slider.scroll_into_view_if_needed()
                before = _counts(page)
                n_images = sum(before.values())
                assert n_images > 0, f"the widget shows no images: {before}"

                handle = slider.locator(".noUi-handle").first
                handle.focus()
                handle.press("End")
                _wait_for_counts(page, {"tp": 0, "fp": 0}, "End (highest threshold) flags nothing")
                high = _counts(page)
                assert high["tn"] + high["fn"] == n_images
                assert _readout(slider).startswith(">"), f"End should read '> highest score', not {_readout(slider)!r}"

                handle.press("Home")
                _wait_for_counts(page, {"fn": 0, "tn": 0}, "Home (lowest threshold) flags everything")
                assert _counts(page)["tp"] + _counts(page)["fp"] == n_images

                # One step up from the lowest threshold can only flag fewer images, never more.
                lowest = _readout(slider)
                handle.press("ArrowRight")
                page.wait_for_timeout(500)
                stepped = _counts(page)
                assert stepped["tp"] + stepped["fp"] <= n_images
                assert sum(stepped.values()) == n_images
                assert _readout(slider) != lowest, "ArrowRight should move to the next stop"

                # The F1-max button selects the exact F1-max threshold: the readout is that float,
                # formatted like every stop (4 significant digits, more only if a neighbour reads alike).
                page.get_by_role("button", name="F1-max threshold").click()
                exact = page.locator('[data-metric="threshold_f1"]').first
                exact_value = float(exact.get_attribute("data-value"))
                label = exact.inner_text().strip()
                assert label in {f"{exact_value:.{digits}g}" for digits in (4, 5, 6)}, (label, exact_value)
                _wait_for_readout(slider, label, "the F1-max button")
                button = page.get_by_role("button", name="F1-max threshold").first.inner_text()
                assert f"({label})" in button, (button, label)

                # Back to the honest threshold with the snap button, for the screenshot.
                normal_button = page.get_by_role("button", name="normal-image threshold").first
                normal_button.click()
                _wait_for_counts(page, before, "the normal-image button restores the counts")
                normal_label = normal_button.inner_text().rsplit("(", 1)[-1].rstrip(")").strip()
                _wait_for_readout(slider, normal_label, "the normal-image button")
            finally:
                shot = artifacts / "threshold_explorer.png"
                explorer = page.locator(".widget-vbox", has=page.locator("h3", has_text="Threshold explorer")).first
                if explorer.count():
                    explorer.scroll_into_view_if_needed()
                    explorer.screenshot(path=str(shot))
                else:
                    page.screenshot(path=str(shot))
                print(f"screenshot: {shot}")
        finally:
            browser.close()
