"""A small printable table and the project's one compact number formatter.

``Table`` renders as HTML in notebooks (``_repr_html_``, styled by the book's CSS class
``routing-laws-table``) and as aligned text in ``print``, numbers formatted per column; ``si`` writes
15e6 as '15M' in tables, chart labels and legends alike."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from routing_laws.errors import ValidationError


@dataclass
class Table:
    """Rows with named columns; ``formats[col]`` is a format spec ('.4f', ',.0f', 'si')."""

    rows: list
    columns: Sequence[str]
    formats: Mapping[str, str] = field(default_factory=dict)
    title: str = ""

    def cell(self, row: Mapping, col: str) -> str:
        v = row.get(col, "")
        if v is None:  # not applicable (e.g. routing metrics of a dense run)
            return ""
        fmt = self.formats.get(col)
        if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool):
            if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                return si(v)
            if fmt == "si":
                return si(float(v))
            return format(v, fmt) if fmt else (f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v))
        return str(v)

    def text(self) -> str:
        body = [[self.cell(r, c) for c in self.columns] for r in self.rows]
        widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(self.columns)]
        lines = ([self.title] if self.title else []) + ["  ".join(c.rjust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(x.rjust(w) for x, w in zip(b, widths)) for b in body]
        return "\n".join(lines)

    __str__ = text

    def markdown(self) -> str:
        """The table as GitHub markdown (README files and closing notes); '|' inside a cell is escaped."""
        esc = lambda t: t.replace("|", "\\|")
        lines = ([f"**{esc(self.title)}**", ""] if self.title else [])
        lines += ["| " + " | ".join(esc(c) for c in self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(esc(self.cell(r, c)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self.cell(r, c))}</td>" for c in self.columns) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f'<table class="routing-laws-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def si(value: float) -> str:
    """Compact label with an SI suffix, 3 significant digits: 15e6 -> '15M', 9.37e11 -> '937B',
    1.3e9 -> '1.3B', 999_999 -> '1M', 512 -> '512', -2e3 -> '-2k'. Not finite: inf -> 'inf',
    -inf -> '-inf', NaN -> 'n/a' (N_cutoff of a law with c <= 0 is inf; a missing value is n/a); from 1e18 up,
    plain scientific notation (9.44e+133), never a 130-digit 'T' label."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValidationError("value", f"must be a number, got {value!r}", "pass an int or float")
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    value = float(f"{value:.3g}")  # round first, so 999_999 is '1M', not '1e+03k'
    if abs(value) >= 1e18:  # beyond a million T a suffix would need hundreds of digits (an extrapolated N_cutoff)
        return f"{value:.3g}"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            q = value / div
            return (f"{q:.3g}" if abs(q) < 1000 else f"{q:.0f}") + suffix
    return f"{value:.3g}"
