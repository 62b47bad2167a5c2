"""Result tables: one per section, rendered as Markdown (printed and written to the results file).

Every figure that has a target carries the target next to it and a PASS/MISS verdict.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PASS = "PASS"  # noqa: S105 - a verdict, not a password
MISS = "MISS"


def verdict(ok: bool) -> str:
    return PASS if ok else MISS


@dataclass
class Table:
    """One section's table, plus notes printed under it and the raw figures for the JSON file."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: Any = None

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.key}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_cell(c) for c in cells])

    def verdicts(self) -> list[str]:
        """Every PASS/MISS cell in the table."""
        return [cell for row in self.rows for cell in row if cell in (PASS, MISS)]

    def markdown(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        numeric = [all(_is_number(row[i]) for row in self.rows) and bool(self.rows)
                   for i in range(len(self.columns))]

        def line(cells: Sequence[str]) -> str:
            padded = [cell.rjust(w) if num else cell.ljust(w)
                      for cell, w, num in zip(cells, widths, numeric, strict=True)]
            return "| " + " | ".join(padded) + " |"

        rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w
                                 for w, num in zip(widths, numeric, strict=True)) + " |"
        parts = [f"## {self.title}", "", line(self.columns), rule,
                 *(line(row) for row in self.rows)]
        if self.notes:
            parts.append("")
            parts.extend(f"- {note}" for note in self.notes)
        return "\n".join(parts) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows,
                "notes": self.notes, "data": self.data}


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def mb(size: float) -> str:
    """Bytes as MiB (what AWS's Lambda quotas and MemorySize call MB)."""
    return f"{size / 1024 / 1024:.2f} MiB"
