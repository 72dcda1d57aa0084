"""An attribution as the plain-text section of a failure report."""

from __future__ import annotations

from typing import Any

from pytest_memwatch.base.units import format_size
from pytest_memwatch.engine.attribution.tracing import framework_file


def format_attribution(attr: dict[str, Any], *, max_sites: int = 5) -> str:
    """Plain-text report section for a failed test."""
    lines: list[str] = []
    if attr.get("mode") == "in_place":
        lines.append("not re-run (the leak is too big to repeat): largest objects alive")
    elif attr.get("mode") != "none":
        lines.append(
            f"traced growth over {attr['runs']} runs: {attr['traced_growth']} bytes "
            f"(tracemalloc, {attr['trace_frames']} frames)"
        )
    if attr.get("note"):
        lines.append(f"note: {attr['note']}")
    if attr["sites"]:
        lines.append("top allocation sites (most recent call first):")
        for site in attr["sites"][:max_sites]:
            lines.append(f"  +{site['size']} B in {site['count']:+d} blocks")
            for fr in site["traceback"]:
                lines.append(f"    {fr['filename']}:{fr['lineno']}: {fr['line']}")
    if attr.get("largest"):
        lines.append("largest objects alive:")
        for row in attr["largest"][:max_sites]:
            lines.append(f"  {format_size(row['size'])} {row['type']} {row['repr']}")
    if attr["types"]:
        lines.append("object types that grew:")
        for row in attr["types"][:max_sites]:
            lines.append(f"  {row['type']}: {row['delta']:+d} (now {row['count']})")
    for ch in attr["chains"]:
        lines.append(f"what holds a new {ch['type']} {ch['repr']}:")
        for link in ch["chain"]:
            via = f" {link['via']}" if link.get("via") else ""
            lines.append(f"  {link['type']} {link['repr']}{via}")
    if attr.get("resources"):
        lines.append("what one more run left open, and where (most recent call first):")
        for res in attr["resources"][:max_sites]:
            lines.append(f"  {res['description']}")
            frames = res.get("origin") or []
            own = [fr for fr in frames if not framework_file(fr["filename"])]
            for fr in own or frames:
                lines.append(f"    {fr['filename']}:{fr['lineno']} in {fr['function']}")
    return "\n".join(lines)
