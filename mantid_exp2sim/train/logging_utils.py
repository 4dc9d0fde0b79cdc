"""Training logs: CSV tables of losses and validation metrics, and their PNG plots.

Tables are kept in memory and rewritten atomically (temp file + ``os.replace``) when flushed,
so a killed run leaves a complete file. On resume, rows after the resumed step are dropped:
those steps are trained again and logged again.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io._atomic import atomic_path, atomic_write_text

__all__ = ["CsvTable", "atomic_write_text", "plot_table"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))
    return str(value)


class CsvTable:
    """A CSV file with a fixed first column ``step`` and columns added as they appear.

    Parameters
    ----------
    path
        Target file.
    columns
        Initial column order (``step`` is put first); new keys in later rows are appended.
    min_flush_seconds
        :meth:`add` rewrites the file at most this often; :meth:`flush` always does.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] = (), *, min_flush_seconds: float = 30.0):
        self.path = Path(path)
        self.columns: list[str] = ["step"] + [c for c in columns if c != "step"]
        self.rows: list[dict[str, Any]] = []
        self.min_flush_seconds = float(min_flush_seconds)
        self._last_flush = 0.0

    def resume(self, step: int) -> None:
        """Load an existing file, keeping only rows with ``step <= step``."""
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for name in reader.fieldnames or []:
                if name not in self.columns:
                    self.columns.append(name)
            for row in reader:
                if int(row["step"]) <= step:
                    self.rows.append({k: _parse(v) for k, v in row.items()})

    def add(self, row: Mapping[str, Any]) -> None:
        """Append one row (must contain ``step``) and flush if enough time has passed."""
        if "step" not in row:
            raise KeyError("a log row needs a 'step' entry")
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(dict(row))
        if time.monotonic() - self._last_flush >= self.min_flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Rewrite the file atomically with every row."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
        atomic_write_text(self.path, buf.getvalue())
        self._last_flush = time.monotonic()


def _parse(text: str) -> Any:
    if text == "":
        return ""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def plot_table(
    table: CsvTable,
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    title: str = "",
    log_y: bool = False,
) -> Path | None:
    """Plot numeric columns against ``step`` into a PNG (matplotlib, Agg; atomic write).

    Returns
    -------
    Path or None
        The PNG path, or ``None`` when there is nothing to plot or matplotlib is missing.
    """
    try:
        # The object-oriented API with the Agg canvas never touches pyplot's global backend.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # plots are optional
        return None
    cols = [c for c in (columns or table.columns) if c != "step"]
    series = {}
    for c in cols:
        pts = [
            (r["step"], r[c])
            for r in table.rows
            if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) and math.isfinite(r[c])
        ]
        if pts:
            series[c] = pts
    if not series:
        return None
    n = len(series)
    ncol = min(3, n)
    nrow = int(math.ceil(n / ncol))
    fig = Figure(figsize=(4.0 * ncol, 2.6 * nrow), constrained_layout=True)
    FigureCanvasAgg(fig)
    for i, (name, pts) in enumerate(series.items()):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        xs, ys = zip(*pts)
        ax.plot(xs, ys, lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if log_y and all(y > 0 for y in ys):
            ax.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    with atomic_path(path, parents=True) as tmp:
        fig.savefig(tmp, dpi=90)
    return path
