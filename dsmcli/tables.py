"""Tables printed to a terminal that never break a cell: columns that do not fit the width are
moved to a further table (with the same leading key columns) instead of being wrapped into
fragments. Off a terminal the width is ``OFF_TERMINAL_WIDTH``."""

from __future__ import annotations

import sys

OFF_TERMINAL_WIDTH = 200


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def _console():
    from rich.console import Console

    console = Console()
    return console if sys.stdout.isatty() else Console(width=OFF_TERMINAL_WIDTH)


def print_records(rows: list[list[str]], headers: list[str], *, title: str | None = None, keys: int = 1) -> None:
    """Print ``rows`` (already formatted cells) under ``headers``; the first ``keys`` columns
    repeat in every part when the columns are split to fit the width."""
    from rich.table import Table

    console = _console()
    width = console.width

    def table(cols: list[int], part_title):
        t = Table(title=part_title, show_edge=False, header_style="bold", title_justify="left")
        for i in cols:
            t.add_column(headers[i], no_wrap=True, justify="left" if i < keys else "right")
        for row in rows:
            t.add_row(*(row[i] for i in cols))
        return t

    lead = list(range(min(keys, len(headers))))
    rest = list(range(len(lead), len(headers)))
    parts, current = [], []
    for i in rest:
        trial = table(lead + current + [i], None)
        if current and console.measure(trial).maximum > width:
            parts.append(current)
            current = [i]
        else:
            current.append(i)
    parts.append(current)
    for n, cols in enumerate(parts):
        console.print(table(lead + cols, title if n == 0 else None))


def print_pairs(record: dict, keys: list[str], *, title: str | None = None) -> None:
    """One record as metric / value rows."""
    print_records([[k, fmt(record.get(k))] for k in keys], ["metric", "value"], title=title)
