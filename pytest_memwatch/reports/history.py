"""The history page: each machine's saved runs, and every test's growth and peak over them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memwatch.base.units import format_size
from pytest_memwatch.reports.charts import Chart, Plot, data_range
from pytest_memwatch.reports.html import environment, page_assets
from pytest_memwatch.reports.results import growth_bytes, now_iso, peak_bytes


@dataclass
class HistoryTest:
    nodeid: str
    index: int
    latest: int | None
    chart: Chart | None


def _history_chart(
    title: str,
    labels: Sequence[str],
    lines: Mapping[str, Sequence[int | None]],
    clip_id: str,
    *,
    width: int = 720,
    height: int = 200,
) -> Chart | None:
    extent = data_range(float(v) for ys in lines.values() for v in ys if v is not None)
    if extent is None:
        return None
    plot = Plot(
        title,
        (0, max(1, len(labels) - 1)),
        (min(0.0, extent[0]), max(0.0, extent[1])),
        xunit="run",
        yunit="bytes",
        width=width,
        height=height,
        clip_id=clip_id,
        xlabels=dict(enumerate(labels)),
    )
    for name, ys in lines.items():
        plot.series(
            name,
            f"mw-s-{name}",
            (
                (i, None if y is None else float(y), f"{labels[i]}: {name} {format_size(y)}")
                for i, y in enumerate(ys)
            ),
        )
    return plot.chart


def history_context(
    grouped: Mapping[str, Sequence[tuple[Any, Mapping[str, Any]]]],
    problems: Sequence[str] = (),
    *,
    source: str = "",
) -> dict[str, Any]:
    """Per machine: the saved runs, total growth over time, and each test's growth and peak.

    ``grouped`` maps a machine id to ``(saved run, document)`` pairs in order;
    a saved run needs a ``label`` (e.g. :class:`pytest_memwatch.reports.baselines.SavedRun`).
    """
    machines = []
    for m_index, (machine, runs) in enumerate(grouped.items()):
        labels = [str(r.label) for r, _ in runs]
        rows = [
            {
                "label": str(r.label),
                "started_at": d["run"].get("started_at"),
                "commit": d["run"].get("commit"),
                "tests": d["totals"].get("tests"),
                "failed": d["totals"].get("failed_verdicts"),
                "growth": d["totals"].get("total_growth", d["totals"].get("total_growth_rss")),
                "peak": d["totals"].get("max_peak_rss"),
            }
            for r, d in runs
        ]
        per_test: dict[str, list[dict[str, Any] | None]] = {}
        for i, (_, d) in enumerate(runs):
            for t in d.get("tests") or []:
                per_test.setdefault(t["nodeid"], [None] * len(runs))[i] = t
        tests = []
        for t_index, (nodeid, series) in enumerate(per_test.items()):
            growth = [None if t is None else growth_bytes(t) for t in series]
            peak = [None if t is None else peak_bytes(t) for t in series]
            latest = next((g for g in reversed(growth) if g is not None), None)
            tests.append(
                HistoryTest(
                    nodeid,
                    t_index,
                    latest,
                    _history_chart(
                        "growth and peak",
                        labels,
                        {"growth": growth, "peak": peak},
                        f"h{m_index}t{t_index}",
                        width=460,
                        height=150,
                    ),
                )
            )
        tests.sort(key=lambda t: -(t.latest or 0))
        machines.append(
            {
                "id": machine,
                "rows": rows,
                "chart": _history_chart(
                    "total growth per run",
                    labels,
                    {"total": [row["growth"] for row in rows]},
                    f"h{m_index}",
                ),
                "tests": tests,
            }
        )
    return {
        "title": "pytest-memwatch history",
        "source": source,
        "machines": machines,
        "problems": list(problems),
        "generated_at": now_iso(),
        **page_assets(),
    }


def render_history(
    grouped: Mapping[str, Sequence[tuple[Any, Mapping[str, Any]]]],
    problems: Sequence[str] = (),
    *,
    source: str = "",
) -> str:
    """Self-contained HTML plotting each test's memory across saved runs."""
    return (
        environment()
        .get_template("history.html.j2")
        .render(history_context(grouped, problems, source=source))
    )
