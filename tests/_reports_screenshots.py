"""Regenerate the screenshots in docs/images/ (not a test; run by hand).

    # a real run of the leak/no-leak scenario suite
    cd fixtures/scenarios && python -m pytest test_scenarios.py -p no:cacheprovider \\
        --memwatch-repeat=2:5 --memwatch-json=/tmp/scenarios.json; cd -
    python tests/_reports_screenshots.py /tmp/scenarios.json

The soak chart comes from the sample document in ``_reports_sample.py`` until
the reference app's soak suite produces one.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _reports_sample import sample_doc
from playwright.sync_api import Page, sync_playwright

from pytest_memwatch.report_html import render_report
from pytest_memwatch.report_json import load_results

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def _details_shot(page: Page, nodeid_part: str, path: Path) -> None:
    page.evaluate("document.querySelectorAll('details.mw-test').forEach(d => d.open = false)")
    details = page.locator("details.mw-test", has_text=nodeid_part).first
    details.evaluate("d => d.open = true")
    details.screenshot(path=str(path))


def main(results: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real.html"
        real.write_text(render_report(load_results(results)), encoding="utf-8")
        sample = Path(tmp) / "sample.html"
        sample.write_text(render_report(sample_doc()), encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(real.as_uri())
            page.screenshot(path=str(IMAGES / "report-summary.png"))
            _details_shot(page, "test_leak_100kib_per_call", IMAGES / "report-test-details.png")
            page.goto(sample.as_uri())
            _details_shot(page, "test_cache_leaks", IMAGES / "report-attribution.png")
            _details_shot(page, "test_recorder_soak", IMAGES / "report-soak.png")
            browser.close()
    for image in sorted(IMAGES.glob("*.png")):
        print(image.relative_to(ROOT))


if __name__ == "__main__":
    main(sys.argv[1])
