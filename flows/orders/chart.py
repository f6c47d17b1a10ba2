"""The orders chart of the merchant's reports: a PNG of the last seven shop days' confirmed,
cancelled and unverified orders, drawn with matplotlib's Agg renderer (no display, no pyplot
state shared between threads)."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flows.orders.reports import DayCount

COLOURS = {"confirmed": "#2e7d32", "cancelled": "#c62828", "unverified": "#9e9e9e"}
WIDTH = 0.27


def daily_chart(days: list[DayCount], title: str) -> bytes:
    """A grouped bar chart, one group per day; the PNG's bytes. CPU-bound: callers in an event
    loop run it in a thread."""
    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = list(range(len(days)))
    for offset, status in enumerate(COLOURS):
        axes.bar(
            [x + (offset - 1) * WIDTH for x in positions],
            [getattr(day, status) for day in days],
            WIDTH,
            label=status,
            color=COLOURS[status],
        )
    axes.set_xticks(positions, [f"{day.day:%a %d %b}" for day in days])
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel("orders")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
