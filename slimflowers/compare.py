"""Compares training runs: one table (Markdown, CSV, console), the statistics behind it, plots, one HTML page.

    python -m slimflowers.compare runs/demo/cifarnet runs/demo/mobilenet_v1_025 --output=runs/demo/report
    python -m slimflowers.compare runs/demo          # a directory of runs: every run inside it

prints one row per run (model, dataset, image size, trainable parameters,
GFLOPs/image, steps, best and final validation accuracy, test top-1/top-5 of the
final and of the best-by-validation checkpoint, mean per-class accuracy, training
images/s, s/step, steps/hour, wall time) and writes into the output directory
(default: `report/` beside the runs when they share a parent directory):
`results.md`, `results.csv`, `loss.png`, `val_accuracy.png`, `steps_per_hour.png`,
`accuracy_vs_params.png`, `frontier.png`, `pairwise.csv`, `per_class/<run>.csv` and `report.html` (one
self-contained page). The statistics (95 % intervals on every accuracy, seed groups, paired comparisons of runs
that share a split, the ranking with ties, per-class tables) come from the evaluators' results.jsonl and
predictions.csv files: report_stats.py, report_plots.py, report_html.py.

Any run works, not only the study's: a run is a trainer's `--train_dir`
(`run_info.json`, `flags.txt`, `train/` events). What each column reads, first
source that has it wins:
- model, dataset, image size: `run_info.json`, else `flags.txt`.
- trainable params, GFLOPs: `run_info.json`.
- steps: `run_info.json` `final_step`, else the last step in `train/` events.
- validation: `eval_validation/results.jsonl`, else the `eval_validation/` events.
  Best = highest accuracy (the earliest step on ties); final = the highest step.
- test: `eval_test/results.jsonl` (final checkpoint) and `eval_test_best/results.jsonl`
  (best-by-validation checkpoint), the row with the highest step of each; both are
  written by `python -m slimflowers.study`.
- speed: `run_info.json`, else the median of the `train/` summaries; wall time:
  `run_info.json` `train_wall_secs`, else last minus first `train/` event time.
- export (columns shown only when some run has one): `export/export_report.json`, written by
  `export_image_classifier.py` (the study's export of the best checkpoint): SavedModel and int8
  TFLite sizes, the int8 model's top-1 on the test split, and the CPU latency (batch 1, one thread)
  of the int8 TFLite model (else the float32 one).
Missing values are `n/a` in Markdown and empty in the CSV.
"""
from slimflowers import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

import csv  # pylint: disable=g-import-not-at-top,wrong-import-order
import dataclasses
import io
import logging as py_logging
import math
import os
import statistics
import sys
import time

from absl import flags
from absl import logging

from slimflowers import errors
from slimflowers import fileio
from slimflowers import metrics
from slimflowers import report_html
from slimflowers import report_plots
from slimflowers import report_stats
from slimflowers import run_dir
from slimflowers import sanity

REPORT_FILES = run_dir.REPORT_FILES


class NotARunError(ValueError):
  """A directory given to compare holds no training run."""


@dataclasses.dataclass
class Run:
  """Everything compare reads from one run directory."""
  path: str
  name: str
  info: dict
  flags: dict
  train: dict            # tag -> [(step, value)] sorted by step, one value per step (the last written)
  train_wall_secs: float  # last minus first train/ event wall time (None without events)
  validation: list       # results rows sorted by step, one per step
  test_final: dict       # eval_test row at the highest step, or None
  test_best: dict        # eval_test_best row at the highest step, or None
  export: dict = dataclasses.field(default_factory=dict)  # export/export_report.json, or {}


# ----------------------------------------------------------------------------- Reading runs

def runs_in(directory):
  """The run directories directly inside `directory`, sorted by name ([] when it holds none)."""
  if not fileio.isdir(directory):
    return []
  return [c for c in (os.path.join(directory, d) for d in sorted(fileio.listdir(directory))) if run_dir.is_run(c)]


def resolve_run_dirs(paths):
  """Run directories from the command line; a directory that holds runs stands for all of them."""
  if not paths:
    raise NotARunError("No run directory given. Usage: python -m slimflowers.compare RUN_DIR [RUN_DIR ...] "
                       "[--output=DIR], e.g. python -m slimflowers.compare runs/demo")
  runs = []
  for path in paths:
    if not fileio.isdir(path):
      raise NotARunError(f"{path!r} does not exist or is not a directory. Pass a training run's --train_dir "
                         "(or a directory of runs, e.g. the study's --runs_dir).")
    if run_dir.is_run(path):
      runs.append(path)
      continue
    if run_dir.is_report(path):
      logging.warning("Skipping %s: it is a comparison report, not a run (e.g. RUNS/report in RUNS/*).", path)
      continue
    children = runs_in(path)
    if not children:
      raise NotARunError(
          f"{path!r} is not a training run: it has no {run_dir.RUN_INFO}, no {run_dir.FLAGS_TXT} and no event "
          f"files in {run_dir.TRAIN_SUBDIR}/, and none of its sub-directories is a run. Pass the --train_dir of "
          "train_image_classifier.py runs (or the study's --runs_dir).")
    logging.info("%s holds %d runs: %s", path, len(children), ", ".join(os.path.basename(c) for c in children))
    runs.extend(children)
  if not runs:
    raise NotARunError(f"No training run among {list(paths)}: only comparison reports. Pass run directories.")
  return runs


def read_scalars(directory):
  """{tag: [(step, value)]} of every scalar in `directory`'s event files, plus (first, last) wall time.

  Reads TF2 tensor scalars (`tf.summary.scalar`) and legacy `simple_value`
  scalars. A step written twice (a resumed run re-logs the steps after its last
  checkpoint) keeps the value written last.
  """
  if not run_dir.has_events(directory):
    return {}, None
  py_logging.getLogger("tensorboard").setLevel(py_logging.WARNING)  # its per-file INFO lines drown the table
  # Imported here: TensorBoard's reader pulls in TensorFlow, which `--help` and errors do not need.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(directory, size_guidance={"tensors": 0, "scalars": 0})
  acc.Reload()
  tags = acc.Tags()
  series, walls = {}, []
  for tag in tags.get("tensors", []):
    if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
      continue
    values = {}
    for event in acc.Tensors(tag):
      array = tensor_util.make_ndarray(event.tensor_proto)
      if array.size != 1:
        continue
      values[int(event.step)] = float(array.reshape(()))
      walls.append(event.wall_time)
    series[tag] = values
  for tag in tags.get("scalars", []):
    values = series.setdefault(tag, {})
    for event in acc.Scalars(tag):
      values[int(event.step)] = float(event.value)
      walls.append(event.wall_time)
  scalars = {tag: sorted(values.items()) for tag, values in series.items() if values}
  return scalars, ((min(walls), max(walls)) if walls else None)


def _validation_from_events(directory):
  scalars, _ = read_scalars(directory)
  rows = {}
  for tag in metrics.EVAL_METRICS:
    for step, value in scalars.get(tag, []):
      rows.setdefault(step, {"step": step})[tag] = value
  return [rows[s] for s in sorted(rows) if "accuracy" in rows[s]]


def _last_row(rows):
  return rows[-1] if rows else None


def _display_names(paths):
  """Basenames, or parent/basename where two runs share a basename."""
  names = [os.path.basename(os.path.normpath(p)) for p in paths]
  if len(set(names)) == len(names):
    return names
  return [os.path.join(os.path.basename(os.path.dirname(os.path.normpath(p))), n) for p, n in zip(paths, names)]


def load_run(path, name=None):
  """Reads one run directory (see the module docstring for what is read)."""
  if not run_dir.is_run(path):
    raise NotARunError(f"{path!r} is not a training run (no {run_dir.RUN_INFO}, {run_dir.FLAGS_TXT} or "
                       f"{run_dir.TRAIN_SUBDIR}/ events).")
  train, walls = read_scalars(os.path.join(path, run_dir.TRAIN_SUBDIR))
  val_dir = run_dir.eval_dir(path, "validation")
  validation = run_dir.read_results(val_dir) or _validation_from_events(val_dir)
  return Run(
      path=path,
      name=name or os.path.basename(os.path.normpath(path)),
      info=run_dir.read_run_info(path, strict=True),
      flags=run_dir.read_flags(path),
      train=train,
      train_wall_secs=(walls[1] - walls[0]) if walls else None,
      validation=validation,
      test_final=_last_row(run_dir.read_results(run_dir.eval_dir(path, "test"))),
      test_best=_last_row(run_dir.read_results(run_dir.eval_dir(path, "test", best=True))),
      export=fileio.read_json(os.path.join(path, run_dir.EXPORT_SUBDIR, run_dir.EXPORT_REPORT)),
  )


# ----------------------------------------------------------------------------- The table

def _number(value):
  """A finite float from a JSON/flag value, else None."""
  if value is None or isinstance(value, bool):
    return None
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def _integer(value):
  value = _number(value)
  return None if value is None else int(round(value))


def _median_of(train, tag):
  values = [v for _, v in train.get(tag, [])]
  return statistics.median(values) if values else None


def summarize(run):
  """The table row of one run: column key -> raw value (None when unknown)."""
  info, flag = run.info, run.flags
  row = {"run": run.name}
  row["model"] = info.get("model_name") or flag.get("model_name")
  row["dataset"] = info.get("dataset_name") or flag.get("dataset_name")
  row["image_size"] = _integer(info.get("image_size", flag.get("train_image_size")))
  row["trainable_params"] = _integer(info.get("trainable_params"))
  row["gflops"] = _number(info.get("gflops"))
  steps = _integer(info.get("final_step"))
  if steps is None and run.train:
    steps = max(series[-1][0] for series in run.train.values())
  row["steps"] = steps

  val = run.validation
  scored = [r for r in val if _number(r.get("accuracy")) is not None]
  # A checkpoint no better than chance is never a "best" (slimflowers/sanity.py): like best/, the table skips it.
  believable = [r for r in scored if not (r.get("sanity") or {}).get("at_chance")]
  # Highest accuracy; on ties the earliest step (the first checkpoint to reach it).
  best = max(believable, key=lambda r: (_number(r["accuracy"]), -int(r["step"]))) if believable else None
  row["best_val_accuracy"] = _number(best.get("accuracy")) if best else None
  row["best_val_step"] = int(best["step"]) if best else None
  row["final_val_accuracy"] = _number(val[-1].get("accuracy")) if val else None
  test, test_best = run.test_final or {}, run.test_best or {}
  row["test_top1"] = _number(test.get("accuracy"))
  row["test_top5"] = _number(test.get("top_5_accuracy"))
  row["best_ckpt_test_top1"] = _number(test_best.get("accuracy"))
  row["best_ckpt_test_top5"] = _number(test_best.get("top_5_accuracy"))
  row["val_mean_per_class_accuracy"] = _number(val[-1].get("mean_per_class_accuracy")) if val else None
  row["status"] = status(run)
  row["test_mean_per_class_accuracy"] = _number(test.get("mean_per_class_accuracy"))

  for key in metrics.SPEED_METRICS:
    value = _number(info.get(key))
    row[key] = value if value is not None else _median_of(run.train, key)
  wall = _number(info.get("train_wall_secs"))
  row["train_wall_secs"] = wall if wall is not None else run.train_wall_secs
  row.update(_export_values(run.export))
  return row


def status(run):
  """'' for a run whose results are believable; else what is wrong, from the evaluator's checks
  (slimflowers/sanity.py) on the final validation result: 'at chance' or 'N pts below training'."""
  if not run.validation:
    return ""
  final = run.validation[-1].get("sanity") or {}
  if final.get("at_chance") and not any(not (r.get("sanity") or {}).get("at_chance") for r in run.validation):
    return "NOT LEARNING: at chance"
  return sanity.verdict(final).replace("at chance", "final at chance")


def _export_values(report):
  """The export columns from an export_report.json's summary (int8 top-1 only when measured on the test split)."""
  summary = report.get("summary") or {}
  on_test = summary.get("verify_split") == "test"
  return {"saved_model_mb": _number(summary.get("saved_model_mb")),
          "tflite_int8_mb": _number(summary.get("tflite_int8_mb")),
          "int8_test_top1": _number(summary.get("int8_top1")) if on_test else None,
          "cpu_latency_ms": _number(summary.get("cpu_latency_ms"))}


def _fmt_accuracy_csv(v):
  return f"{v:.4f}"


def _fmt_accuracy_md(v):
  return f"{100 * v:.2f}"


def _fmt_wall_md(secs):
  secs = int(round(secs))
  return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


# (key, Markdown header, CSV format, Markdown format); accuracies are fractions in
# the CSV and percentages in Markdown.
COLUMNS = (
    ("run", "run", str, str),
    ("model", "model", str, str),
    ("dataset", "dataset", str, str),
    ("image_size", "size", str, "{}".format),
    ("trainable_params", "params", str, "{:,}".format),
    ("gflops", "GFLOPs/img", "{:.4g}".format, "{:.4g}".format),
    ("steps", "steps", str, "{:,}".format),
    ("best_val_accuracy", "best val %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("best_val_step", "@ step", str, "{:,}".format),
    ("final_val_accuracy", "final val %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("test_top1", "test top-1 %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("test_top5", "test top-5 %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("best_ckpt_test_top1", "best-ckpt test top-1 %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("best_ckpt_test_top5", "best-ckpt test top-5 %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("val_mean_per_class_accuracy", "val per-class %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("test_mean_per_class_accuracy", "test per-class %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("images_per_sec", "train img/s", "{:.2f}".format, "{:.1f}".format),
    ("sec_per_step", "s/step", "{:.4f}".format, "{:.3f}".format),
    ("steps_per_hour", "steps/h", "{:.1f}".format, "{:,.0f}".format),
    ("train_wall_secs", "wall time", "{:.1f}".format, _fmt_wall_md),
)
# Shown only when some run is not learning (status()).
WARNING_COLUMNS = (("status", "warning", str, str),)
# Shown only when at least one run has an export report (export_image_classifier.py).
EXPORT_COLUMNS = (
    ("saved_model_mb", "SavedModel MB", "{:.2f}".format, "{:.1f}".format),
    ("tflite_int8_mb", "TFLite int8 MB", "{:.2f}".format, "{:.1f}".format),
    ("int8_test_top1", "int8 test top-1 %", _fmt_accuracy_csv, _fmt_accuracy_md),
    ("cpu_latency_ms", "CPU ms/img", "{:.2f}".format, "{:.1f}".format),
)


def columns_for(rows):
  """COLUMNS, plus EXPORT_COLUMNS when some row has an export value, plus WARNING_COLUMNS when a run has one."""
  exported = any(row.get(key) is not None for row in rows for key, *_ in EXPORT_COLUMNS)
  warned = any(row.get("status") for row in rows)
  return COLUMNS + (EXPORT_COLUMNS if exported else ()) + (WARNING_COLUMNS if warned else ())


def format_csv(rows, extra=()):
  """results.csv; `extra`: (key, format) columns appended (report_stats: intervals, seeds)."""
  columns = list(columns_for(rows)) + [(key, key, fmt, fmt) for key, fmt in extra]
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow([key for key, *_ in columns])
  for row in rows:
    writer.writerow(["" if row.get(key) is None else fmt(row[key]) for key, _, fmt, _ in columns])
  return out.getvalue()


def format_markdown_table(rows):
  """A Markdown table padded into aligned columns, so it reads in a terminal too."""
  columns = columns_for(rows)
  header = [h for _, h, *_ in columns]
  body = [["n/a" if row[key] is None else (fmt(row[key]) + report_stats.interval_text(row, key)).replace("|", "\\|")
           for key, _, _, fmt in columns] for row in rows]
  widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
  right = [fmt is not str for _, _, _, fmt in columns]

  def line(cells):
    return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

  rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
  return "\n".join([line(header), rule] + [line(cells) for cells in body]) + "\n"


def format_markdown(rows, runs, trained=None, analysis=None):
  parts = ["# Run comparison", "", format_markdown_table(rows)]
  if trained is not None:
    names = [run.name for run in runs if fileio.abspath(run.path) in trained]
    parts += [f"This invocation trained: {', '.join(names) if names else 'none (every run was already trained)'}; "
              "the other runs were already in the directory.", ""]
  suspect = [row for row in rows if row.get("status")]
  if suspect:
    parts += ["**Runs whose numbers are not results** (the evaluator's check against chance and against the "
              "training batch accuracy): " + "; ".join(f"`{row['run']}`: {row['status']}" for row in suspect) +
              f". A run at chance has no best checkpoint. Likely causes: {sanity.LIKELY_CAUSES}.", ""]
  parts += ["Runs:"]
  parts += [f"- `{run.name}`: `{fileio.abspath(run.path)}`" for run in runs]
  parts += ["", "Accuracies in %. *best val*: the highest validation accuracy, reached at *@ step*; *test*: the "
            "final checkpoint on the test split; *best-ckpt test*: the best-validation checkpoint on the test split; "
            "*per-class*: mean per-class accuracy of the final checkpoint; *params*: trainable parameters; "
            "*GFLOPs/img*: forward pass; speed (img/s, s/step, steps/h) as logged by the trainer, excluding "
            "compilation and checkpointing; *wall time*: training, h:mm:ss; *warning* (when shown): a run not learning "
            "(at chance, or far below its training accuracy). Column keys and raw values: results.csv.",
            ""]
  if any(row.get(key) is not None for row in rows for key, *_ in EXPORT_COLUMNS):
    parts[-1:-1] = ["Export (RUN/export/export_report.json): file sizes in MB; *int8 test top-1*: the int8 TFLite "
                    "model on the test split; *CPU ms/img*: batch 1 on one thread, the int8 TFLite model (else the "
                    "float32 one).", ""]
  parts[-1:-1] = ["Intervals in brackets: 95 % Wilson score intervals of each accuracy over its number of images "
                  "(results.csv: `<column>_ci_low`, `<column>_ci_high`).", ""]
  if analysis is not None:
    parts += [report_stats.markdown(analysis, rows=rows)]
  parts += [f"![{name}]({name})" for name in REPORT_FILES if name.endswith(".png")]
  return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- Plots

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
    points = [(int(r["step"]), _number(r.get("accuracy"))) for r in run.validation]
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


# ----------------------------------------------------------------------------- Report

@dataclasses.dataclass
class Report:
  output_dir: str
  rows: list
  markdown_table: str
  paths: dict  # file name -> path
  secs: float = 0.0  # how long reading the runs and writing the report took
  trained: list = None  # names of the runs this invocation trained (the study), or None
  analysis: object = None  # report_stats.Analysis


def default_output_dir(run_dirs):
  parents = {os.path.dirname(fileio.abspath(p)) for p in run_dirs}
  if len(parents) != 1:
    raise ValueError(f"The runs {list(run_dirs)} do not share a parent directory, so there is no default "
                     "report location. Pass --output=DIR.")
  return os.path.join(parents.pop(), run_dir.REPORT_SUBDIR)


def write_report(run_dirs, output_dir=None, trained=None, commands=None):
  """Reads the runs and writes the table and plots into `output_dir`; returns a Report.

  `trained`: the run directories this invocation trained (the study), said in results.md; None: not said.
  """
  start = time.monotonic()
  run_dirs = resolve_run_dirs(list(run_dirs))
  output_dir = output_dir or default_output_dir(run_dirs)
  runs = [load_run(p, name) for p, name in zip(run_dirs, _display_names(run_dirs))]
  rows = [summarize(run) for run in runs]
  analysis = report_stats.analyse(runs, rows)
  fileio.makedirs(output_dir)
  paths = {name: os.path.join(output_dir, name) for name in REPORT_FILES}
  fileio.write_text_atomic(paths["results.csv"], format_csv(rows, report_stats.csv_columns(rows, analysis.seeds)))
  trained = None if trained is None else {fileio.abspath(p) for p in trained}
  fileio.write_text_atomic(paths["results.md"], format_markdown(rows, runs, trained, analysis))
  paths.update(report_stats.write_files(analysis, output_dir))
  if analysis.seeds:  # one line per model: the mean across its seeds, a band from min to max
    report_plots.plot_curves_with_bands(runs, analysis.groups, paths["loss.png"], "loss")
    report_plots.plot_curves_with_bands(runs, analysis.groups, paths["val_accuracy.png"], "validation")
  else:
    plot_loss(runs, paths["loss.png"])
    plot_val_accuracy(runs, paths["val_accuracy.png"])
  plot_steps_per_hour(rows, paths["steps_per_hour.png"])
  plot_accuracy_vs_params(rows, paths["accuracy_vs_params.png"])
  report_plots.plot_frontier(rows, paths["frontier.png"])
  report_html.write(paths["report.html"], report_html.Page(
      title=f"Run comparison: {os.path.basename(os.path.dirname(fileio.abspath(output_dir))) or output_dir}",
      rows=rows, columns=[c for c in COLUMNS + WARNING_COLUMNS if c[0] in {k for k, *_ in columns_for(rows)}],
      analysis=analysis, export_columns=list(EXPORT_COLUMNS), commands=list(commands or []),
      images={"Training loss": paths["loss.png"], "Validation accuracy": paths["val_accuracy.png"],
              "Efficiency frontier": paths["frontier.png"], "Training speed": paths["steps_per_hour.png"]},
      class_names={run.name: report_stats.class_names_of(run, int(run.info.get("num_classes") or 0)) for run in runs
                   if run.info.get("num_classes")}))
  return Report(output_dir=output_dir, rows=rows, markdown_table=format_markdown_table(rows), paths=paths,
                secs=time.monotonic() - start, analysis=analysis,
                trained=None if trained is None else [r.name for r in runs if fileio.abspath(r.path) in trained])


def print_report(report, out=None):
  out = out or sys.stdout
  print(report.markdown_table, file=out)
  if report.trained is not None:
    print(f"This invocation trained: {', '.join(report.trained) or 'none'}; the other rows were already in the "
          "runs directory.", file=out)
  for row in report.rows:
    if row.get("status"):
      print(f"WARNING {row['run']}: {row['status']}: not a result (see {report.paths['results.md']}).", file=out)
  if report.analysis is not None and report.analysis.ranking:
    print(report.analysis.ranking, file=out)
  print(f"Report: {report.paths['results.md']} (CSV: {report.paths['results.csv']}, {report.paths['pairwise.csv']})",
        file=out)
  print("Plots: " + ", ".join(report.paths[n] for n in REPORT_FILES if n.endswith(".png")), file=out)
  print(f"Page (everything above, one file): {report.paths['report.html']}", file=out)
  out.flush()


def _define_flags():
  flags.DEFINE_string("output", None, "Directory for results.md/.csv and the plots "
                      "(default: report/ in the runs' common parent directory).")


def main(argv):
  try:
    report = write_report(argv[1:], flags.FLAGS.output)
  except (NotARunError, ValueError) as e:
    raise errors.BadValue(str(e)) from e  # one line, exit 2 (slimflowers/cli.py)
  print_report(report)


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
