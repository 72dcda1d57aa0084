"""Opening memwatch's pages in headless Chromium (Debian's binary, driven by Playwright).

Shared by the browser tests. A page is looked at the way people look at it: at
a desktop width (1280 px) and a phone's (390 px), with JavaScript on and off;
each look collects console messages and page errors and measures sideways
scrolling. Skips with the reason when chromium or playwright is missing,
unless ``MEMWATCH_REQUIRE_BROWSER`` is set (CI sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MEMWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
WIDTHS = (1280, 390)


def unavailable(reason: str) -> None:
    if os.environ.get("MEMWATCH_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and MEMWATCH_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(f"{reason}; install it (apt-get install -y chromium) to run the browser tests")


@contextmanager
def launch() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        unavailable(f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Look:
    """One page at one width, with or without JavaScript, and what it reported."""

    page: Any
    width: int
    js: bool
    messages: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def sideways(self) -> int:
        """How far the page scrolls sideways (0: it fits the window)."""
        width: int = self.page.evaluate(
            "document.scrollingElement.scrollWidth - window.innerWidth")
        return width

    def wider_than_window(self) -> list[str]:
        """Elements that stick out of the window, outside any box that scrolls itself."""
        found: list[str] = self.page.evaluate("""() => {
            const inScroller = e => { for (let p = e.parentElement; p; p = p.parentElement) {
                const s = getComputedStyle(p).overflowX;
                if (s === 'auto' || s === 'scroll' || s === 'hidden') return true; }
              return false; };
            return [...document.body.querySelectorAll('*')]
              .filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !inScroller(e))
              .slice(0, 10).map(e => e.tagName.toLowerCase() + '.' + e.className); }""")
        return found


@contextmanager
def look(browser: Any, path: Path, width: int, js: bool = True) -> Iterator[Look]:
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  java_script_enabled=js)
    page = context.new_page()
    seen = Look(page, width, js)
    # Every console message at warning level or above, and uncaught errors.
    page.on("console", lambda m: seen.messages.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning", "assert") else None)
    page.on("pageerror", lambda e: seen.messages.append(f"pageerror: {e}"))
    page.on("request", lambda r: seen.requests.append(r.url))
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        yield seen
    finally:
        context.close()
