"""The Distill tab in headless Chromium: the app with its own jobs and models folders, and the tab's screenshot.

python -m bench.distill_ui --screenshot assets/screenshot_distill.png --json
(launches the tiny sCM+LADD preset from the tab, waits for it to finish, then saves the picture)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.e2e import browser, open_canvas, running_app
from pipelines.registry import MODELS_DIR


def open_distill_tab(chromium, url: str):
    """A page with the canvas loaded, switched to the Distill tab (its first path, "Fine-tune on my pictures")."""
    page = open_canvas(chromium, url)
    page.get_by_role("tab", name="Distill", exact=True).click()
    page.locator("#ss-ft-start").wait_for()
    return page


def open_distill_teacher(page, advanced: bool = False) -> None:
    """Switch the Distill tab to "Distill a teacher", and open its Advanced settings."""
    page.get_by_role("tab", name="Distill a teacher").click()
    page.locator("#ss-launch").wait_for()
    if advanced:
        page.locator("#ss-advanced").get_by_text("Advanced").click()
        page.get_by_label("Steps", exact=True).wait_for()


def job_status(page) -> str:
    return page.locator("#ss-job-status").inner_text()


def wait_for_status(page, text: str, timeout_s: float) -> str:
    """Wait until the selected job's status line contains `text`; returns the line."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = job_status(page)
        if text in status:
            return status
        page.wait_for_timeout(500)
    raise TimeoutError(f"the job status never showed {text!r}; last: {job_status(page)!r}")


def screenshot(path: Path, steps: int = 6) -> dict:
    """Launch the tiny sCM+LADD preset from the tab (with its estimate), wait for it to finish and save the tab."""
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        for manifest in MODELS_DIR.glob("*.toml"):
            shutil.copy(manifest, models)
        with (
            running_app(models_dir=models, jobs=Path(tmp) / "jobs", outputs=Path(tmp) / "outputs") as (url, _),
            browser() as chromium,
        ):
            page = open_distill_tab(chromium, url)
            open_distill_teacher(page, advanced=True)
            page.get_by_label("Preset", exact=True).click()
            page.get_by_role("option", name="tiny_scm_ladd (pipeline check").click()
            page.get_by_label("the preset's teacher").check()
            steps_box = page.get_by_label("Steps", exact=True)
            steps_box.fill(str(steps))
            steps_box.press("Tab")
            page.locator("#ss-launch").click()
            page.locator("#ss-launch-note").get_by_text("Launched job").wait_for(timeout=600_000)
            status = wait_for_status(page, "· done", timeout_s=600)
            page.wait_for_timeout(1500)  # the next poll draws the last preview and curves
            page.screenshot(path=str(path), full_page=True)
    return {"screenshot": str(path), "bytes": path.stat().st_size, "status": status.splitlines()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshot", type=Path, required=True, help="where to save the PNG")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    report = screenshot(args.screenshot, args.steps)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
