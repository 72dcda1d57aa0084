"""Regenerate the screenshots in docs/images/ (not a test; run by hand).

All come from real runs of the reference app's tests:

    bash .ci/main            # the suite under --memwatch: artifacts/memwatch-results.json
    # two of the app's documented faults, switched on (test module from
    # reference_app/tests/_part2_leak_scenarios.py, chunks_kept + unbounded_cache):
    REFERENCE_APP_FAULTS=chunks_kept,unbounded_cache pytest test_reference_app_faults.py \
        --memwatch --memwatch-json=/tmp/ra-fault.json
    # the app's soak test, capped to two minutes:
    cd reference_app && pytest tests/test_soak.py::test_the_pipeline_on_the_real_clock \
        --memwatch --memwatch-soak --memwatch-soak-duration=120s --memwatch-json=/tmp/ra-soak.json
    python tests/_reports_screenshots.py --suite artifacts/memwatch-results.json \
        --faults /tmp/ra-fault.json --soak /tmp/ra-soak.json

The "left behind" section and the phone-width page come from two other faults
that leave a descriptor and a thread per call (the same scenario modules,
temp_wav_kept + capture_thread_not_joined), under plain --memwatch:

    REFERENCE_APP_FAULTS=temp_wav_kept,capture_thread_not_joined pytest \
        test_reference_app_faults.py --memwatch --memwatch-json=/tmp/ra-ledger.json
    python tests/_reports_screenshots.py --ledger /tmp/ra-ledger.json

Each option is optional: only the screenshots of the runs given are made again.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from pytest_memwatch.reports.html import render_report
from pytest_memwatch.reports.results_file import load_results

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def _details_shot(page: Page, nodeid_part: str, path: Path) -> None:
    page.evaluate("document.querySelectorAll('details.mw-test').forEach(d => d.open = false)")
    details = page.locator("details.mw-test", has_text=nodeid_part).first
    details.evaluate("d => d.open = true")
    details.scroll_into_view_if_needed()
    page.wait_for_timeout(200)  # let the opened details lay out before the shot
    details.screenshot(path=str(path))


def main(suite: str | None, faults: str | None, soak: str | None, ledger: str | None) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = {}
        for name, path in (("suite", suite), ("faults", faults), ("soak", soak),
                           ("ledger", ledger)):
            if path is not None:
                pages[name] = Path(tmp) / f"{name}.html"
                pages[name].write_text(render_report(load_results(path)), encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            if "suite" in pages:
                page.goto(pages["suite"].as_uri())
                page.screenshot(path=str(IMAGES / "report-summary.png"))
                _details_shot(page, "test_long_input_in_bounded_memory",
                              IMAGES / "report-test-details.png")
            if "faults" in pages:
                page.goto(pages["faults"].as_uri())
                page.screenshot(path=str(IMAGES / "report-faults-summary.png"))
                _details_shot(page, "test_transcribe_new_chunks",
                              IMAGES / "report-attribution.png")
            if "soak" in pages:
                page.goto(pages["soak"].as_uri())
                _details_shot(page, "test_the_pipeline_on_the_real_clock",
                              IMAGES / "report-soak.png")
            if "ledger" in pages:
                page.goto(pages["ledger"].as_uri())
                page.locator("#ledger").screenshot(path=str(IMAGES / "report-left-behind.png"))
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.goto(pages["ledger"].as_uri())
                phone.locator("#tests-section").screenshot(path=str(IMAGES / "report-phone.png"))
            browser.close()
    for image in sorted(IMAGES.glob("*.png")):
        print(image.relative_to(ROOT))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate docs/images/report-*.png.")
    for name in ("suite", "faults", "soak", "ledger"):
        parser.add_argument(f"--{name}", metavar="RESULTS.json")
    args = parser.parse_args()
    main(args.suite, args.faults, args.soak, args.ledger)
