"""The run directory's layout, in one place: what the trainer, evaluators, study and report write, and the readers.

    from slimflowers.core import run_dir
    info = run_dir.read_run_info("runs/demo/mobilenet_v1_050")          # {} while missing or being replaced
    rows = run_dir.read_results(run_dir.eval_dir("runs/demo/mobilenet_v1_050", "validation"))

    TRAIN_DIR/
      run_info.json, flags.txt, .lock, ckpt-STEP.*, checkpoint   the trainer
      train/                                                     the trainer's summaries
      eval_<split>/results.jsonl, events, best/{best.json, ...}  an evaluator (one per split); predictions.csv: its
                                                                 final evaluation, one row per example
      eval_test_best/                                            the best-by-validation checkpoint on the test split
      train.log, eval.log                                        the study's per-child logs
    RUNS_DIR/report/                                             python -m slimflowers.compare (REPORT_FILES)
    EXPORT_DIR/saved_model/, model_<quant>.tflite, labels.txt, export.json, export_report.json,
      export_manifest.json
                                                               (the study's: TRAIN_DIR/export/)
"""
import logging as py_logging
import math
import os

from absl import logging

from slimflowers.core import fileio

RUN_INFO = "run_info.json"
FLAGS_TXT = "flags.txt"
TRAIN_SUBDIR = "train"
RESULTS_FILE = "results.jsonl"
BEST_SUBDIR = "best"
BEST_FILE = "best.json"
REPORT_SUBDIR = "report"
REPORT_FILES = ("results.md", "results.csv", "loss.png", "val_accuracy.png", "steps_per_hour.png",
                "accuracy_vs_params.png", "frontier.png", "pairwise.csv", "report.html")
TRAIN_LOG = "train.log"
EVAL_LOG = "eval.log"
EXPORT_SUBDIR = "export"          # the study's export of a run's best checkpoint: TRAIN_DIR/export/
EXPORT_JSON = "export.json"
EXPORT_REPORT = "export_report.json"
EXPORT_MANIFEST = "export_manifest.json"  # every file the export wrote, with its size and sha256
_EVENTS_GLOB = "events.out.tfevents.*"

# The summary tags and result keys that the trainer, the evaluator, HParams and the report share.
# The evaluator's metrics: summary tags, results.jsonl keys, report and HParams columns (slimflowers/eval/metrics.py).
EVAL_METRICS = ("accuracy", "top_5_accuracy", "loss", "mean_per_class_accuracy")
# The trainer's scalar summaries (TRAIN_DIR/train/).
TRAIN_METRICS = ("total_loss", "cross_entropy", "regularization_loss", "learning_rate", "accuracy", "gradient_norm",
                 "images_per_sec", "sec_per_step", "steps_per_hour")
SPEED_METRICS = ("images_per_sec", "sec_per_step", "steps_per_hour")


def eval_subdir(split, best=False):
  """`eval_validation`, `eval_test`, or (the best-by-validation checkpoint on a split) `eval_test_best`."""
  return f"eval_{split}" + ("_best" if best else "")


VAL_SUBDIR = eval_subdir("validation")
TEST_SUBDIR = eval_subdir("test")
TEST_BEST_SUBDIR = eval_subdir("test", best=True)


def eval_dir(train_dir, split, best=False):
  return os.path.join(train_dir, eval_subdir(split, best))


def best_dir(eval_dir_):
  return os.path.join(eval_dir_, BEST_SUBDIR)


# ----------------------------------------------------------------------------------------------------------------------
# run_info.json and flags.txt (written by the trainer only)


def finite_float(value):
  """A finite float from a JSON or flag value, else None (what the report's readers accept)."""
  if value is None or isinstance(value, bool):
    return None
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def read_run_info(train_dir, strict=False):
  """train_dir/run_info.json, or {} while it is missing or being replaced (a ValueError with `strict`)."""
  return fileio.read_json(os.path.join(train_dir, RUN_INFO), strict=strict)


def write_run_info(train_dir, info):
  fileio.write_json_atomic(os.path.join(train_dir, RUN_INFO), info)


def format_flags(values):
  """An absl flagfile from {name: value} (None left out, lists comma-joined, booleans as --x / --nox)."""
  lines = []
  for k, v in sorted(values.items()):
    if v is None:
      continue
    if isinstance(v, (list, tuple)):
      v = ",".join(map(str, v))
    if isinstance(v, bool):
      lines.append(f"--{k}" if v else f"--no{k}")
    else:
      lines.append(f"--{k}={v}")
  return "\n".join(lines) + "\n"


def write_flags(train_dir, values):
  fileio.write_text_atomic(os.path.join(train_dir, FLAGS_TXT), format_flags(values))


def read_flags(train_dir):
  """Parses train_dir/flags.txt (`--name=value`, `--bool`, `--nobool`) into {name: str or bool}; {} if absent."""
  out = {}
  try:
    text = fileio.read_text(os.path.join(train_dir, FLAGS_TXT))
  except (OSError, fileio._not_found_error()):  # pylint: disable=protected-access
    return out
  for line in text.splitlines():
    line = line.strip()
    if not line.startswith("--"):
      continue
    name, eq, value = line[2:].partition("=")
    if eq:
      out[name] = value
    elif name.startswith("no"):
      out[name[2:]] = False
    else:
      out[name] = True
  return out


# ----------------------------------------------------------------------------------------------------------------------
# Evaluator outputs


def results_path(eval_dir_):
  return os.path.join(eval_dir_, RESULTS_FILE)


def read_results(eval_dir_):
  """The rows of eval_dir/results.jsonl sorted by step, the last one written winning for a step.

  A torn line (killed writer) or a row without a step is skipped with a warning.
  """
  by_step = {}
  path = results_path(eval_dir_)
  for row in fileio.read_jsonl(path):
    try:
      by_step[int(row["step"])] = row
    except (KeyError, TypeError, ValueError):
      logging.warning("%s: a row without a step; skipped: %r", path, row)
  return [by_step[s] for s in sorted(by_step)]


def evaluated_steps(eval_dir_):
  return {int(r["step"]) for r in read_results(eval_dir_)}


def read_best(eval_dir_):
  """best/best.json of an evaluator: {} when absent, or unreadable or incomplete (a warning names it; the
  evaluator replaces it with its next best). The one reader of best.json: evaluator, final splits, study."""
  path = os.path.join(best_dir(eval_dir_), BEST_FILE)
  if not fileio.exists(path):
    return {}
  best = fileio.read_json(path)
  try:
    int(best["step"])
  except (KeyError, TypeError, ValueError) as e:
    logging.warning("Ignoring unreadable %s (no %s); best/ will be replaced by the next evaluation.", path, e)
    return {}
  return best


# ----------------------------------------------------------------------------------------------------------------------
# Recognizing runs


def has_events(directory):
  return bool(fileio.glob(os.path.join(directory, _EVENTS_GLOB)))


def read_scalars(directory):
  """{tag: [(step, value)]} of every scalar in `directory`'s event files, plus (first, last) wall time.

  Reads TF2 tensor scalars (`tf.summary.scalar`) and legacy `simple_value`
  scalars. A step written twice (a resumed run re-logs the steps after its last
  checkpoint) keeps the value written last.
  """
  if not has_events(directory):
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


def is_run(path):
  """True if `path` looks like a trainer's train_dir."""
  return fileio.isdir(path) and (
      fileio.isfile(os.path.join(path, RUN_INFO)) or fileio.isfile(os.path.join(path, FLAGS_TXT))
      or has_events(os.path.join(path, TRAIN_SUBDIR)))


def is_report(path):
  return all(fileio.isfile(os.path.join(path, name)) for name in ("results.csv", "results.md"))
