"""The report's four PNG plots (matplotlib, no pyplot: no global backend state, headless).

    plots.plot_loss(runs, "report/loss.png")              # training loss per step, one curve per run
    plots.plot_val_accuracy(runs, "report/val_accuracy.png")
    plots.plot_steps_per_hour(rows, "report/steps_per_hour.png")
    plots.plot_accuracy_vs_params(rows, "report/accuracy_vs_params.png")

`runs` are compare.Run objects, `rows` compare.summarize's dicts (slimflowers/study/compare.py).
"""

from slimflowers.core import fileio
from slimflowers.core import run_dir


def _figure():
  # A bare Figure (no pyplot): no global backend state, works headless.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
  return fig, fig.add_subplot()


def _save(fig, path):
  with fileio.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png")


def _no_data(ax, what):
  ax.text(0.5, 0.5, f"no {what} logged yet", ha="center", va="center", transform=ax.transAxes)


def _finish_curves(fig, ax, path, drawn, what):
  """Grid, then a legend when any run had data (else a 'no data' note), then save."""
  ax.grid(alpha=0.3)
  if drawn:
    ax.legend()
  else:
    _no_data(ax, what)
  _save(fig, path)


def plot_loss(runs, path):
  fig, ax = _figure()
  drawn = False
  for run in runs:
    series = run.train.get("total_loss") or run.train.get("cross_entropy")
    if series:
      ax.plot([s for s, _ in series], [v for _, v in series], label=run.name)
      drawn = True
  ax.set(title="Training loss", xlabel="step", ylabel="total loss")
  _finish_curves(fig, ax, path, drawn, "training loss")


def plot_val_accuracy(runs, path):
  fig, ax = _figure()
  drawn = False
  for run in runs:
    points = [(int(r["step"]), run_dir.finite_float(r.get("accuracy"))) for r in run.validation]
    points = [(s, v) for s, v in points if v is not None]
    if points:
      ax.plot([s for s, _ in points], [100 * v for _, v in points], marker="o", markersize=3, label=run.name)
      drawn = True
  ax.set(title="Validation accuracy", xlabel="step", ylabel="top-1 accuracy (%)")
  _finish_curves(fig, ax, path, drawn, "validation accuracy")


def plot_steps_per_hour(rows, path):
  fig, ax = _figure()
  names = [r["run"] for r in rows]
  values = [r["steps_per_hour"] or 0.0 for r in rows]
  bars = ax.bar(names, values, color="tab:blue")
  ax.bar_label(bars, labels=["n/a" if r["steps_per_hour"] is None else f"{r['steps_per_hour']:,.0f}"
                             for r in rows])
  ax.set(title="Training speed", ylabel="steps/hour")
  ax.tick_params(axis="x", rotation=20)
  _save(fig, path)


def plot_accuracy_vs_params(rows, path):
  """Test top-1 when every run with a parameter count has one, else best validation accuracy."""
  fig, ax = _figure()
  with_params = [r for r in rows if r["trainable_params"]]
  key, label = "test_top1", "test top-1 accuracy (%)"
  if not with_params or any(r["test_top1"] is None for r in with_params):
    key, label = "best_val_accuracy", "best validation accuracy (%)"
  points = [(r["trainable_params"], r[key], r["run"]) for r in with_params if r[key] is not None]
  for params, acc, name in points:
    ax.scatter(params, 100 * acc)
    ax.annotate(name, (params, 100 * acc), textcoords="offset points", xytext=(5, 5))
  ax.set_xscale("log")
  ax.set(title="Accuracy against size", xlabel="trainable parameters (log scale)", ylabel=label)
  ax.grid(alpha=0.3, which="both")
  if not points:
    _no_data(ax, "accuracy with parameter count")
  _save(fig, path)
