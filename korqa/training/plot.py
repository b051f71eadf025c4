"""Draw a training run's curves (loss and validation EM/F1 per step) from its log.jsonl."""

from __future__ import annotations

from pathlib import Path

# Figure + the Agg canvas directly, not pyplot: no global state and no display needed.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from korqa.corpus.formats import read_jsonl


def read_log(path: str | Path) -> list[dict]:
    """The rows of a log.jsonl, skipping a last line cut short by a kill."""
    return read_jsonl(path, hint="delete the line or the run's log.jsonl")


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction, so the first points are not dragged to 0."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def plot_curves(log_path: str | Path, png_path: str | Path) -> None:
    """Training loss (raw and smoothed) above validation EM/F1, both against the optimizer step."""
    rows = read_log(log_path)
    train = [row for row in rows if row.get("kind") == "train"]
    evals = [row for row in rows if row.get("kind") == "eval"]

    # Fixed margins: a tight layout would cost more than the drawing at every validation.
    figure = Figure(figsize=(8, 6))
    figure.subplots_adjust(left=0.09, right=0.98, top=0.97, bottom=0.08, hspace=0.08)
    FigureCanvasAgg(figure)
    loss_axes, eval_axes = figure.subplots(2, 1, sharex=True)

    steps = [row["step"] for row in train]
    losses = [row["loss"] for row in train]
    loss_axes.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
    if losses:
        loss_axes.plot(steps, smooth(losses), color="tab:blue", label="loss (smoothed)")
    loss_axes.set_ylabel("training loss")
    loss_axes.legend(loc="upper right")
    loss_axes.grid(alpha=0.3)

    eval_steps = [row["step"] for row in evals]
    for key, color in (("f1", "tab:green"), ("exact_match", "tab:orange")):
        eval_axes.plot(eval_steps, [row[key] for row in evals], marker="o", color=color,
                       label=key)
    eval_axes.set_xlabel("optimizer step")
    eval_axes.set_ylabel("validation score")
    if evals:
        eval_axes.legend(loc="best")
    eval_axes.grid(alpha=0.3)

    figure.savefig(png_path, dpi=100)
