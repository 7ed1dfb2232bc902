"""The locus explorer in a real browser: Voila and JupyterLab, driven by Playwright in headless Chromium.

Both tests serve ``notebooks/03_locus_explorer.ipynb`` on 127.0.0.1 (a free port), then

1. wait for the score track,
2. drag the window slider,
3. check that the window coordinates and the stage panel changed,
4. click on the track (+ lane, other half of the locus) and check that this window is shown,
5. lower the threshold, click a candidate row and check the jump to its best window.

Screenshots go to ``test-artifacts/`` (git-ignored). Every server is started in its own
process group and stopped by its PID in a ``finally`` block, also when a test fails.
Chromium is Debian's (``/usr/bin/chromium``; ``make test`` installs it); when it is
missing these tests fail with a message, they are not skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "03_locus_explorer.ipynb"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STARTUP_S = 180  # server start + kernel start + the first scan, on a busy 2-core CI machine
UPDATE_S = 90  # one widget update under load


# --------------------------------------------------------------------------- servers


@contextmanager
def serve(cmd: list[str], url: str, log: Path, env: dict | None = None, cwd: Path | None = None):
    """Run a server in its own process group until the block ends; stop it by PID even on failure."""
    full_env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline:
                    raise AssertionError(f"server did not answer at {url}; see {log}") from None
                time.sleep(0.5)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the server and the kernels it started), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    try:  # kernels that outlived the server in its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


@contextmanager
def browser_page(chromium: str, artifacts: Path, name: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2200})
            messages: list[str] = []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            try:
                yield page
            except BaseException:
                try:
                    page.screenshot(path=str(artifacts / f"{name}_failure.png"), full_page=True)
                    (artifacts / f"{name}_console.log").write_text("\n".join(messages))
                except Exception:  # noqa: BLE001
                    pass
                raise
        finally:
            browser.close()


# --------------------------------------------------------------------------- interaction


def _label(page) -> str:
    return page.locator(".m2v-window-label .m2v-window-coords").first.inner_text()


def _panel_src(page) -> str:
    return page.locator("img.m2v-stage-panel").first.get_attribute("src") or ""


def _track_src(page) -> str:
    return page.locator("img.m2v-track").first.get_attribute("src") or ""


def _wait_for_track(page, timeout_s: float = STARTUP_S) -> None:
    page.wait_for_function(
        """() => { const t = document.querySelector('img.m2v-track');
                   const p = document.querySelector('img.m2v-stage-panel');
                   const l = document.querySelector('.m2v-window-label .m2v-window-coords');
                   return t && t.naturalWidth > 0 && p && p.naturalWidth > 0 && l; }""",
        timeout=timeout_s * 1000,
    )


def _drag(page, slider_class: str, fraction: float) -> None:
    """Drag a slider's handle to ``fraction`` of its track, with the mouse."""
    track = page.locator(f".{slider_class} .noUi-base").first
    handle = page.locator(f".{slider_class} .noUi-handle").first
    track.scroll_into_view_if_needed()
    hb, tb = handle.bounding_box(), track.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(tb["x"] + tb["width"] * fraction, tb["y"] + tb["height"] / 2, steps=12)
    page.mouse.up()


def _wait_change(page, getter, old: str, what: str, timeout_s: float = UPDATE_S) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        new = getter(page)
        if new and new != old:
            return new
        page.wait_for_timeout(250)
    raise AssertionError(f"{what} did not change from {old!r} within {timeout_s} s")


def _handle_in_right_half(page, slider_class: str) -> bool:
    hb = page.locator(f".{slider_class} .noUi-handle").first.bounding_box()
    tb = page.locator(f".{slider_class} .noUi-base").first.bounding_box()
    return hb["x"] + hb["width"] / 2 > tb["x"] + tb["width"] / 2


def _coords(label: str) -> tuple[int, int, str]:
    m = re.search(r":([\d,]+)-([\d,]+) \(([+\-−])\)", label)
    assert m, label
    return int(m[1].replace(",", "")), int(m[2].replace(",", "")), m[3]


def exercise_explorer(page, artifacts: Path, name: str) -> None:
    """Steps 1-5 of the browser test, the same in Voila and JupyterLab."""
    _wait_for_track(page)
    assert page.locator(".m2v-error").count() == 0, page.locator(".m2v-message").first.inner_text()
    page.screenshot(path=str(artifacts / f"{name}_1_loaded.png"), full_page=True)

    # 2-3: move the window slider; the coordinates and the stage panel change
    label0, panel0, track0 = _label(page), _panel_src(page), _track_src(page)
    start0 = _coords(label0)[0]
    _drag(page, "m2v-position", 0.15 if _handle_in_right_half(page, "m2v-position") else 0.85)
    label1 = _wait_change(page, _label, label0, "window label")
    _wait_change(page, _panel_src, panel0, "stage panel")
    _wait_change(page, _track_src, track0, "track (window marker)")
    page.wait_for_timeout(500)
    assert _coords(label1)[0] != start0
    page.locator(".m2v-window-label").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"{name}_2_slider_moved.png"), full_page=True)

    # 4: click on the track, on the other half of the locus, in the + lane: that window is shown
    label1, panel1 = _label(page), _panel_src(page)
    img = page.locator("img.m2v-track").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    start1 = _coords(label1)[0]
    # the data area runs from about 7 % to 92 % of the image; the + lane is near the top
    left_half = not _handle_in_right_half(page, "m2v-position")
    fx = 0.8 if left_half else 0.2
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * 0.2)
    label2 = _wait_change(page, _label, label1, "window label after a click on the track")
    _wait_change(page, _panel_src, panel1, "stage panel after a click on the track")
    start2, _, strand2 = _coords(label2)
    assert (start2 > start1) if left_half else (start2 < start1), (label1, label2)
    assert strand2 == "+", label2
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / f"{name}_3_track_click.png"), full_page=True)

    # 5: lower the threshold until there are candidates, click one, check the jump
    track_thr = _track_src(page)
    _drag(page, "m2v-threshold", 0.0)
    # the candidate table is rebuilt before the track is redrawn with the new threshold: once the track has
    # changed, the rows are those of the new threshold (rows of the old one may still be there before that)
    _wait_change(page, _track_src, track_thr, "track after the threshold change")
    page.wait_for_selector(".m2v-candidate", timeout=UPDATE_S * 1000)
    page.wait_for_timeout(1000)  # new rows are new widget views, created asynchronously
    rows = page.locator("button.m2v-candidate")
    target = None
    for i in range(rows.count()):
        text = rows.nth(i).inner_text()
        m = re.search(r"best window ([\d,]+)-([\d,]+)", text)
        strand = re.search(r"\(([+\-])\)", text)[1]
        if m and (f"{m[1]}-{m[2]} ({strand})" not in _label(page)):
            target = (rows.nth(i), f"{m[1]}-{m[2]} ({strand})")
            break
    assert target is not None, "no candidate row that would move the window"
    row, expected = target
    before, track_before, panel_before = _label(page), _track_src(page), _panel_src(page)
    row.scroll_into_view_if_needed()
    row.click()
    after = _wait_change(page, _label, before, "window label after the candidate click")
    assert expected in after, (expected, after)
    _wait_change(page, _track_src, track_before, "track (window marker) after the candidate click")
    _wait_change(page, _panel_src, panel_before, "stage panel after the candidate click")
    page.wait_for_timeout(500)  # let the browser decode the new images before the screenshot
    page.locator(".m2v-window-label").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"{name}_4_candidate_jump.png"), full_page=True)
    assert page.locator(".m2v-error").count() == 0


# --------------------------------------------------------------------------- tests


def test_voila_locus_explorer(chromium_executable, free_port, artifacts_dir, tmp_path):
    cmd = [_bin("voila"), str(NOTEBOOK), "--no-browser", f"--port={free_port}", "--Voila.ip=127.0.0.1",
           "--VoilaConfiguration.file_allowlist=['.*']"]
    url = f"http://127.0.0.1:{free_port}/"
    with serve(cmd, url, artifacts_dir / "voila_server.log", cwd=tmp_path):
        with browser_page(chromium_executable, artifacts_dir, "voila") as page:
            page.goto(url, timeout=STARTUP_S * 1000, wait_until="commit")
            exercise_explorer(page, artifacts_dir, "voila")


def test_jupyterlab_locus_explorer(chromium_executable, free_port, artifacts_dir, tmp_path):
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # the Lab may autosave outputs: never into the repository
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    cmd = [_bin("jupyter"), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={free_port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    url = f"http://127.0.0.1:{free_port}/lab/tree/{NOTEBOOK.name}"
    with serve(cmd, f"http://127.0.0.1:{free_port}/api/status", artifacts_dir / "lab_server.log", env=env,
               cwd=root):
        with browser_page(chromium_executable, artifacts_dir, "lab") as page:
            page.goto(url, timeout=STARTUP_S * 1000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=STARTUP_S * 1000)
            # wait for the kernel, then Run > Run All Cells
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=STARTUP_S * 1000, state="attached")
            _run_all_cells(page)
            _accept_kernel_dialog(page)
            exercise_explorer(page, artifacts_dir, "lab")


def _accept_kernel_dialog(page) -> None:
    """Accept JupyterLab's "Select Kernel" dialog (Python 3) if it is open.

    On a loaded machine the Lab can ask for a kernel after a first Run All; the
    modal dialog then blocks every click on the page.
    """
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    if accept.count():
        accept.first.click()
        page.locator(".jp-Dialog").first.wait_for(state="detached", timeout=10_000)


def _run_all_cells(page, attempts: int = 6) -> None:
    """Run > Run All Cells, again until a cell starts (a click before the kernel is ready can be lost)."""
    started = r"""() => [...document.querySelectorAll('.jp-InputArea-prompt')]
                        .some(p => /\[(\*|\d+)\]/.test(p.textContent))"""
    for _ in range(attempts):
        _accept_kernel_dialog(page)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        try:
            page.wait_for_function(started, timeout=20_000)
            return
        except Exception:  # noqa: BLE001 - not started yet: close any menu and try again
            page.keyboard.press("Escape")
    raise AssertionError("JupyterLab never started running the notebook's cells")
