"""Training logs: one CSV per phase (``train_log.csv``, ``val_log.csv``) and their plot.

Never imports Dask or Zarr.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["CsvLog", "plot_log", "read_log"]


class CsvLog:
    """Append-only CSV with a fixed header (from the first row).

    On resume the rows after the resumed step are dropped, so a resumed log reads like an
    uninterrupted one.

    Parameters
    ----------
    path : Path
        The CSV file.
    keep_until_step : int or None
        Resume: keep the existing rows up to this step. None: start a new log.
    """

    def __init__(self, path: Path, *, keep_until_step: int | None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            rows = read_log(path)
            if keep_until_step is None:
                rows = []
            else:
                rows = [r for r in rows if int(r["step"]) <= keep_until_step]
            if rows:
                self.fields = list(rows[0].keys())
            with path.open("w", newline="") as fh:
                if self.fields:
                    w = csv.DictWriter(fh, fieldnames=self.fields)
                    w.writeheader()
                    w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        """Append a row (columns missing from the header are dropped, missing ones left empty).

        Parameters
        ----------
        row : dict
            Column values; must have ``'step'``.
        """
        if self.fields is None:
            self.fields = list(row.keys())
            with self.path.open("w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields).writeheader()
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: row.get(k, "") for k in self.fields}
            )


def read_log(path: Path) -> list[dict[str, str]]:
    """Read a log CSV (no rows when it does not exist).

    Parameters
    ----------
    path : Path
        The CSV file.

    Returns
    -------
    list of dict
        One dict of strings per row.
    """
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def plot_log(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Plot a run's training losses and validation scores against the step.

    Parameters
    ----------
    run_dir : str or Path
        A run folder with ``train_log.csv`` (losses) and ``val_log.csv`` (PhIRM, PSNR, SSIM).
    out : str or Path, optional
        The PNG to write (default ``run_dir/training.png``).

    Returns
    -------
    Path
        The PNG.
    """
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    path = Path(out) if out else run_dir / "training.png"
    tr, va = read_log(run_dir / "train_log.csv"), read_log(run_dir / "val_log.csv")
    fig = Figure(figsize=(13, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)

    def series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for r in rows:
            v = r.get(key, "")
            if v not in ("", None):
                xs.append(int(r["step"]))
                ys.append(float(v))
        return xs, ys

    keys = list(tr[0].keys()) if tr else []
    for k in keys:
        if k == "g_loss" or k.startswith("g_") or "_g_" in k:
            ax1.plot(*series(tr, k), label=k)
        elif k.endswith("d_loss"):
            ax2.plot(*series(tr, k), label=k)
    ax1.set(title="generator losses", xlabel="step")
    ax2.set(title="discriminator losses", xlabel="step")
    for k in ("phirm", "ssim"):
        ax3.plot(*series(va, k), marker="o", label=f"val {k}")
    ax3.set(title="validation (PSNR on right axis)", xlabel="step", ylim=(0, 1.05))
    ax3b = ax3.twinx()
    ax3b.plot(*series(va, "psnr"), marker="s", color="tab:red", label="val psnr (dB)")
    ax: Axes
    for ax in (ax1, ax2, ax3):
        if ax.lines:
            ax.legend(fontsize=7)
    if ax3b.lines:
        ax3b.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path
