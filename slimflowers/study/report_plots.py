"""The report's plots that carry uncertainty: curves with a band across seeds, and the efficiency frontier.

    report_plots.plot_curves_with_bands(runs, analysis.groups, "report/val_accuracy.png", "validation")
    report_plots.plot_frontier(rows, "report/frontier.png")
    report_plots.write_plots(runs, rows, groups, paths)   # every PNG of the report (plots.py's four too)

Drawn on bare matplotlib Figures (no pyplot state, headless), written through fileio (temporary name, rename).
"""
import numpy as np

from slimflowers.core import fileio
from slimflowers.study import plots

FRONTIER_FILE = "frontier.png"
# x axes of the frontier: (row key, label); lower is better on each.
FRONTIER_COSTS = (("trainable_params", "trainable parameters"), ("gflops", "GFLOPs per image"),
                  ("tflite_int8_mb", "TFLite int8 size (MB)"), ("cpu_latency_ms", "CPU ms/image (batch 1)"))


def _save(fig, path):
  with fileio.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png")


def _series(run, kind):
  """[(step, value)] of a run: validation accuracy (%) from results, or the training loss."""
  if kind == "validation":
    points = [(int(r["step"]), r.get("accuracy")) for r in run.validation]
    return [(s, 100 * float(v)) for s, v in points if isinstance(v, (int, float))]
  return list(run.train.get("total_loss") or run.train.get("cross_entropy") or [])


def plot_curves_with_bands(runs, groups, path, kind="validation"):
  """One line per group: the mean across its seeds at the steps all of them have, a band from min to max (a single
  run: its own line, no band)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
  ax = fig.add_subplot()
  by_name = {run.name: run for run in runs}
  drawn = False
  for name, members in groups.items():
    series = [dict(_series(by_name[m], kind)) for m in members if m in by_name]
    series = [s for s in series if s]
    if not series:
      continue
    steps = sorted(set.intersection(*[set(s) for s in series]))
    if not steps:
      continue
    values = np.array([[s[step] for step in steps] for s in series])
    label = f"{name} ({len(series)} seeds: mean, min-max band)" if len(series) > 1 else name
    line, = ax.plot(steps, values.mean(axis=0), marker="o" if kind == "validation" else None, markersize=3,
                    label=label)
    if len(series) > 1:
      ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    drawn = True
  if kind == "validation":
    ax.set(title="Validation accuracy across seeds", xlabel="step", ylabel="top-1 accuracy (%)")
  else:
    ax.set(title="Training loss across seeds", xlabel="step", ylabel="total loss")
  ax.grid(alpha=0.3)
  if drawn:
    ax.legend()
  else:
    ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
  _save(fig, path)


def pareto_optimal(points):
  """Indices of the (cost, accuracy) points no other point beats: at most the cost and at least the accuracy,
  strictly better in one."""
  optimal = []
  for i, (cost, acc) in enumerate(points):
    dominated = any(c <= cost and a >= acc and (c < cost or a > acc) for j, (c, a) in enumerate(points) if j != i)
    if not dominated:
      optimal.append(i)
  return optimal


def frontier_accuracy(rows):
  """(key, label): test top-1 when every row has one, else the best validation accuracy."""
  if rows and all(r.get("test_top1") is not None for r in rows):
    return "test_top1", "test top-1 accuracy (%)"
  return "best_val_accuracy", "best validation accuracy (%)"


def plot_frontier(rows, path):
  """Accuracy with its 95 % interval as error bars against each cost; the Pareto-optimal runs marked (stars,
  joined by a line) on each axis; axes without data say so."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  key, label = frontier_accuracy(rows)
  fig = Figure(figsize=(11, 8), dpi=100, layout="constrained")
  axes = fig.subplots(2, 2).reshape(-1)
  fig.suptitle("Efficiency frontier: accuracy (95 % Wilson interval) against cost; stars: Pareto-optimal")
  for ax, (cost_key, cost_label) in zip(axes, FRONTIER_COSTS):
    points = [(float(r[cost_key]), 100 * float(r[key]), r) for r in rows
              if r.get(cost_key) is not None and r.get(key) is not None and float(r[cost_key]) > 0]
    ax.set(xlabel=cost_label + " (log scale)", ylabel=label)
    ax.grid(alpha=0.3, which="both")
    if not points:
      exported = cost_key in ("tflite_int8_mb", "cpu_latency_ms")
      ax.text(0.5, 0.5, f"no {cost_label} measured\n(export with the study's --export)" if exported else
              f"no {cost_label} recorded", ha="center", va="center", transform=ax.transAxes)
      continue
    optimal = set(pareto_optimal([(c, a) for c, a, _ in points]))
    for i, (cost, acc, row) in enumerate(points):
      low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
      yerr = None if low is None or high is None else [[acc - 100 * low], [100 * high - acc]]
      ax.errorbar([cost], [acc], yerr=yerr, fmt="*" if i in optimal else "o", markersize=12 if i in optimal else 6,
                  capsize=4, color="tab:red" if i in optimal else "tab:blue")
      ax.annotate(row["run"], (cost, acc), textcoords="offset points", xytext=(6, 6), fontsize=9)
    front = sorted((points[i][0], points[i][1]) for i in optimal)
    if len(front) > 1:
      ax.plot([c for c, _ in front], [a for _, a in front], color="tab:red", alpha=0.5, linestyle="--")
    ax.set_xscale("log")
  _save(fig, path)


def write_plots(runs, rows, groups, paths):
  """Every PNG of the report into `paths` (file name -> path): with seed `groups` (report_stats.Analysis.groups)
  the loss and validation curves are one line per model, the mean across its seeds with a min-max band; without
  (None) one line per run (plots.py); then speed, accuracy against parameters, and the frontier."""
  if groups:
    plot_curves_with_bands(runs, groups, paths["loss.png"], "loss")
    plot_curves_with_bands(runs, groups, paths["val_accuracy.png"], "validation")
  else:
    plots.plot_loss(runs, paths["loss.png"])
    plots.plot_val_accuracy(runs, paths["val_accuracy.png"])
  plots.plot_steps_per_hour(rows, paths["steps_per_hour.png"])
  plots.plot_accuracy_vs_params(rows, paths["accuracy_vs_params.png"])
  plot_frontier(rows, paths["frontier.png"])
