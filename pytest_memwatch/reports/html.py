"""The HTML leak report: a pure renderer of the results document.

:func:`render_report` turns a results document into one self-contained HTML
page (inline CSS, a little inline JavaScript for sorting and filtering, charts
as inline SVG computed in :mod:`~pytest_memwatch.reports.charts`),
:func:`pytest_memwatch.reports.history.render_history` plots saved runs over
time, and :func:`html_section` renders one test as a fragment for
pytest-html. What each page shows is computed in
:mod:`~pytest_memwatch.reports.html_view`; this module only renders.

Every string that comes from tests reaches the page through Jinja2's
autoescaping, the one escaping path; the document embedded for the page's
"download JSON" button goes through ``tojson``, which escapes ``<``, ``>``
and ``&`` so that no ``</script>`` can end the data block early. The page
carries a Content-Security-Policy that lets only the report's own script run
(by its hash) and forbids every network request, so it also proves it works
offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pytest_memwatch.base.units import (
    format_count,
    format_rate,
    format_seconds,
    format_size,
    format_test_seconds,
)
from pytest_memwatch.reports.compare import METRICS
from pytest_memwatch.reports.html_view import PROBE_ROWS, make_view, report_context

TEMPLATES = Path(__file__).parent / "templates"


def _pretty(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False)


def _pretty_inline(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: autoescape everything, fail on undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Every template, whatever its extension: HTML is the only output.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Callable[..., str]] = {
        "size": format_size,
        "ssize": lambda v: format_size(v, signed=True),
        "duration": format_seconds,
        "rate": format_rate,
        "number": format_count,
        "seconds": format_test_seconds,
        "pretty": _pretty,
        "pretty_inline": _pretty_inline,
        "metric": lambda v, m, signed=False: METRICS[m].format(v, signed=signed),
    }
    env.filters.update(filters)
    return env


def asset(name: str) -> Markup:
    # Our own CSS/JS, shipped with the package: raw text inside <style>/<script>,
    # where HTML entities are not decoded, so it must not be escaped. Test data
    # never goes through here.
    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def page_assets() -> dict[str, str]:
    script = asset("report.js")
    return {
        "css": asset("page.css") + asset("components.css"),
        "script": script,
        "csp": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src '{_csp_hash(script)}'"
        ),
    }


def iter_report(doc: Mapping[str, Any], *, title: str | None = None) -> Iterator[str]:
    """The self-contained HTML report of one results document, in pieces as it is written."""
    template = environment().get_template("report.html.j2")
    return template.generate({**report_context(doc, title=title), **page_assets()})


def render_report(doc: Mapping[str, Any], *, title: str | None = None) -> str:
    """The self-contained HTML report of one results document."""
    return "".join(iter_report(doc, title=title))


def html_section(test: dict[str, Any]) -> str:
    """One test's memory section as an escaped HTML fragment (for pytest-html's extras).

    Static (no script), styled by its own scoped ``<style>``.
    """
    # Several sections share one pytest-html page: derive ids from the test id.
    digest = hashlib.sha1(str(test.get("nodeid", "")).encode("utf-8")).hexdigest()[:10]
    view = make_view(test, 1, id_prefix=f"mw{digest}-")
    return (
        environment()
        .get_template("section.html.j2")
        .render(view=view, css=asset("components.css"), probe_rows=PROBE_ROWS)
    )
