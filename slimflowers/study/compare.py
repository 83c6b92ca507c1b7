"""Compares training runs: one table (Markdown, CSV, console), the statistics behind it, plots, one HTML page.

    python -m slimflowers.compare runs/demo/cifarnet runs/demo/mobilenet_v1_025 --output=runs/demo/report
    python -m slimflowers.compare runs/demo          # a directory of runs: every run inside it

prints one row per run (model, dataset, image size, trainable parameters,
GFLOPs/image, steps, best and final validation accuracy, test top-1/top-5 of the
final and of the best-by-validation checkpoint, mean per-class accuracy, training
images/s, s/step, steps/hour, wall time) and writes into the output directory
(default: `report/` beside the runs when they share a parent directory):
`results.md`, `results.csv`, `loss.png`, `val_accuracy.png`, `steps_per_hour.png`,
`accuracy_vs_params.png` (plots.py), `frontier.png`, `pairwise.csv`, `per_class/<run>.csv` and `report.html` (one
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
  written by `eval_image_classifier.py --final_eval_splits=test` (the study runs its
  evaluators so).
- speed: `run_info.json`, else the median of the `train/` summaries; wall time:
  `run_info.json` `train_wall_secs`, else last minus first `train/` event time.
- export (columns shown only when some run has one): `export/export_report.json`, written by
  `export_image_classifier.py` (the study's export of the best checkpoint): SavedModel and int8
  TFLite sizes, the int8 model's top-1 on the test split, and the CPU latency (batch 1, one thread)
  of the int8 TFLite model (else the float32 one).
Missing values are `n/a` in Markdown and empty in the CSV.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

import csv  # pylint: disable=g-import-not-at-top,wrong-import-order
import dataclasses
import io
import os
import statistics
import sys
import time

from absl import flags
from absl import logging

from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.eval import sanity
from slimflowers.study import report_html
from slimflowers.study import report_plots
from slimflowers.study import report_stats

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


def _validation_from_events(directory):
  scalars, _ = run_dir.read_scalars(directory)
  rows = {}
  for tag in run_dir.EVAL_METRICS:
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
  train, walls = run_dir.read_scalars(os.path.join(path, run_dir.TRAIN_SUBDIR))
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

def _integer(value):
  value = run_dir.finite_float(value)
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
  row["gflops"] = run_dir.finite_float(info.get("gflops"))
  steps = _integer(info.get("final_step"))
  if steps is None and run.train:
    steps = max(series[-1][0] for series in run.train.values())
  row["steps"] = steps

  val = run.validation
  scored = [r for r in val if run_dir.finite_float(r.get("accuracy")) is not None]
  # A checkpoint no better than chance is never a "best" (slimflowers/eval/sanity.py): like best/, the table skips it.
  believable = [r for r in scored if not (r.get("sanity") or {}).get("at_chance")]
  # Highest accuracy; on ties the earliest step (the first checkpoint to reach it).
  best = max(believable, key=lambda r: (run_dir.finite_float(r["accuracy"]), -int(r["step"]))) if believable else None
  row["best_val_accuracy"] = run_dir.finite_float(best.get("accuracy")) if best else None
  row["best_val_step"] = int(best["step"]) if best else None
  row["final_val_accuracy"] = run_dir.finite_float(val[-1].get("accuracy")) if val else None
  test, test_best = run.test_final or {}, run.test_best or {}
  row["test_top1"] = run_dir.finite_float(test.get("accuracy"))
  row["test_top5"] = run_dir.finite_float(test.get("top_5_accuracy"))
  row["best_ckpt_test_top1"] = run_dir.finite_float(test_best.get("accuracy"))
  row["best_ckpt_test_top5"] = run_dir.finite_float(test_best.get("top_5_accuracy"))
  row["val_mean_per_class_accuracy"] = run_dir.finite_float(val[-1].get("mean_per_class_accuracy")) if val else None
  row["status"] = status(run)
  row["test_mean_per_class_accuracy"] = run_dir.finite_float(test.get("mean_per_class_accuracy"))

  for key in run_dir.SPEED_METRICS:
    value = run_dir.finite_float(info.get(key))
    row[key] = value if value is not None else _median_of(run.train, key)
  wall = run_dir.finite_float(info.get("train_wall_secs"))
  row["train_wall_secs"] = wall if wall is not None else run.train_wall_secs
  row.update(_export_values(run.export))
  return row


def status(run):
  """'' for a run whose results are believable; else what is wrong, from the evaluator's checks
  (slimflowers/eval/sanity.py) on the final validation result: 'at chance' or 'N pts below training'."""
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
  return {"saved_model_mb": run_dir.finite_float(summary.get("saved_model_mb")),
          "tflite_int8_mb": run_dir.finite_float(summary.get("tflite_int8_mb")),
          "int8_test_top1": run_dir.finite_float(summary.get("int8_top1")) if on_test else None,
          "cpu_latency_ms": run_dir.finite_float(summary.get("cpu_latency_ms"))}


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
  """The report's table in Markdown, padded into aligned columns (cli.markdown_table)."""
  columns = columns_for(rows)
  body = [["n/a" if row[key] is None else fmt(row[key]) + report_stats.interval_text(row, key)
           for key, _, _, fmt in columns] for row in rows]
  return cli.markdown_table([h for _, h, *_ in columns], body, [fmt is not str for _, _, _, fmt in columns]) + "\n"


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
    parts[-1:-1] = [f"Export (RUN/{run_dir.EXPORT_SUBDIR}/{run_dir.EXPORT_REPORT}): file sizes in MB; *int8 test "
                    "top-1*: the int8 TFLite model on the test split; *CPU ms/img*: batch 1 on one thread, the int8 "
                    "TFLite model (else the float32 one).", ""]
  parts[-1:-1] = ["Intervals in brackets: 95 % Wilson score intervals of each accuracy over its number of images "
                  "(results.csv: `<column>_ci_low`, `<column>_ci_high`).", ""]
  if analysis is not None:
    parts += [report_stats.markdown(analysis, rows=rows)]
  parts += [f"![{name}]({name})" for name in REPORT_FILES if name.endswith(".png")]
  return "\n".join(parts) + "\n"


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
  `commands`: [(what, command)] that reproduce the runs, report.html's last section (the study's).
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
  report_plots.write_plots(runs, rows, analysis.groups if analysis.seeds else None, paths)
  shown = {key for key, *_ in columns_for(rows)}
  report_html.write(paths["report.html"], report_html.page_for(
      output_dir, runs, rows, analysis, columns=[c for c in COLUMNS + WARNING_COLUMNS if c[0] in shown],
      export_columns=EXPORT_COLUMNS, commands=commands, paths=paths))
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


def define_flags():
  flags.DEFINE_string("output", None, "Directory for results.md/.csv and the plots "
                      "(default: report/ in the runs' common parent directory).")


def main(argv):
  try:
    report = write_report(argv[1:], flags.FLAGS.output)
  except (NotARunError, ValueError) as e:
    raise errors.BadValue(str(e)) from e  # one line, exit 2 (slimflowers/core/cli.py)
  print_report(report)
