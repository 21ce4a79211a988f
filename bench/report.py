"""The result rows every benchmark prints: two measures side by side, their ratio, and
what the ratio means (with a target where the issue set one)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MEANING_WIDTH = 56


@dataclass(frozen=True)
class Measure:
    label: str
    value: float
    unit: str

    def text(self) -> str:
        number = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:,.2f}"
        return f"{self.label}: {number} {self.unit}"


@dataclass(frozen=True)
class Result:
    name: str
    a: Measure
    b: Measure
    ratio: float
    ratio_of: str  # which measure over which, e.g. "B/A"
    meaning: str
    details: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def table(results: Sequence[Result]) -> str:
    headers = ("benchmark", "A", "B", "ratio", "target", "what it means")
    rows = [
        (
            r.name,
            r.a.text(),
            r.b.text(),
            f"{r.ratio:,.2f}x ({r.ratio_of})",
            r.target + ("" if r.met is None else (" met" if r.met else " NOT met")),
            r.meaning,
        )
        for r in results
    ]
    columns = len(headers) - 1
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(columns)]
    indent = sum(widths) + 2 * columns

    def line(cells: Sequence[str]) -> list[str]:
        meaning = textwrap.wrap(cells[columns], MEANING_WIDTH) or [""]
        first = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        return [f"{first}  {meaning[0]}", *(" " * indent + more for more in meaning[1:])]

    out = line(headers)
    out.append("-" * (indent + MEANING_WIDTH))
    for row in rows:
        out += line(row)
    return "\n".join(out)
