"""Severity levels of findings, most severe first: the one order the report, the HTML page and alerts share."""

from __future__ import annotations

SEVERITIES = ("critical", "high", "medium", "low")
SEVERITY_RANK = {level: len(SEVERITIES) - index for index, level in enumerate(SEVERITIES)}


def raised(severity: str, steps: int) -> str:
    """`severity` raised by `steps` levels (negative lowers it), kept within low..critical."""
    index = SEVERITIES.index(severity) - steps
    return SEVERITIES[min(max(index, 0), len(SEVERITIES) - 1)]
