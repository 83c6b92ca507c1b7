"""Logs a training run's hyper-parameters for TensorBoard's HPARAMS tab.

    from slimflowers.train import hparams
    hparams.log_hparams(train_dir, {"model": "inception_v3", "learning_rate": 0.01, ...})
    # then: tensorboard --logdir RUNS   -> HPARAMS tab, one row per run

Why a separate events file in the run's root (`train_dir`), not in `train_dir/train`:
the HParams plugin treats the run that holds the session-start summary as the
session, and finds each metric in the run `<session>/<group>`. Written in
`train_dir`, the session's metrics resolve to the summaries the trainer and the
evaluator already write: `accuracy` in `train_dir/eval_validation` and
`total_loss` in `train_dir/train`. TensorBoard shows the last value of each, i.e.
the run's final metrics, so nothing has to be logged again at the end.

Order. The HPARAMS tab lists the hyper-parameters whose values differ between
runs first, then the others, each group sorted by the stored name, and shows
the first few: alphabetical flags (augment, batch_size, color_distortion, ...)
say least. So each is stored under its position in the caller's dict
("00_model", "01_image_size", ...) with its plain name as the display name:
the tab shows the plain names in the order given (the trainer's: model, image
size, optimizer, learning rate first).

Every run writes the same experiment summary (hparam names and metrics, no
value domains) because TensorBoard uses whichever experiment summary it finds
first; the values, their types and their ranges come from each run's session
summary. Safe to call again when a run resumes: TensorBoard keeps one session
per run directory.
"""
import numbers
import os

from absl import logging
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from slimflowers.core import run_dir

# "group/tag": the tag's run relative to the run directory passed to log_hparams.
DEFAULT_METRICS = (
    f"{run_dir.VAL_SUBDIR}/accuracy",
    f"{run_dir.VAL_SUBDIR}/top_5_accuracy",
    f"{run_dir.TRAIN_SUBDIR}/total_loss",
    f"{run_dir.TRAIN_SUBDIR}/steps_per_hour",
)

# Where a bare tag name lives (ARCHITECTURE.md, Summaries): the evaluator's
# tags in eval_validation/, the trainer's in train/. A bare "accuracy" means
# validation accuracy (the trainer's batch accuracy is "train/accuracy").
_TAG_GROUPS = {**{tag: run_dir.TRAIN_SUBDIR for tag in run_dir.TRAIN_METRICS},
               **{tag: run_dir.VAL_SUBDIR for tag in run_dir.EVAL_METRICS}}

_DISPLAY_NAMES = {
    "eval_validation/accuracy": "validation accuracy",
    "eval_validation/top_5_accuracy": "validation top-5 accuracy",
    "eval_validation/loss": "validation loss",
    "eval_validation/mean_per_class_accuracy": "validation mean per-class accuracy",
    "train/accuracy": "training batch accuracy",
    "train/total_loss": "training loss",
    "train/steps_per_hour": "steps/hour",
}


def _to_hparam_value(name, value):
  """Returns `value` as one of the types the plugin stores (bool, int, float, str)."""
  if isinstance(value, (bool, str)):
    return value
  if hasattr(value, "item") and not isinstance(value, (list, tuple)):  # numpy scalars
    value = value.item()
  if isinstance(value, bool):
    return value
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  if value is None:
    return "none"
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  logging.warning("hparam %r has a %s value %r; logging it as a string.", name, type(value).__name__, value)
  return str(value)


def _metric(spec):
  """A `hp.Metric` from "group/tag", a bare trainer/evaluator tag, or (group, tag) ("" = the run directory)."""
  if isinstance(spec, (tuple, list)):
    group, tag = spec
  elif "/" in spec:
    group, tag = spec.rsplit("/", 1)
  elif spec in _TAG_GROUPS:
    group, tag = _TAG_GROUPS[spec], spec
  else:
    raise ValueError(f"Metric {spec!r}: say where the tag is written, as 'group/tag' (group = the sub-directory "
                     f"of the run, e.g. 'eval_validation/{spec}' or 'train/{spec}'), or use one of the known "
                     f"tags {sorted(_TAG_GROUPS)}.")
  key = f"{group}/{tag}" if group else tag
  return hp.Metric(tag, group=group or None, display_name=_DISPLAY_NAMES.get(key, key))


def default_trial_id(logdir):
  """"name (parent)" of the run directory: readable, and distinct for one model's runs in two studies."""
  path = os.path.normpath(os.path.abspath(logdir))
  name, parent = os.path.basename(path), os.path.basename(os.path.dirname(path))
  return f"{name} ({parent})" if parent else name


def tensorboard_key(index, name):
  """The name the `index`-th hparam is stored under: "00_model", "01_image_size", ... (see the module doc)."""
  return f"{index:02d}_{name}"


def log_hparams(logdir, hparams, metrics=DEFAULT_METRICS, trial_id=None):
  """Writes the HParams experiment and session summaries into `logdir` (the run's train_dir).

  Args:
    logdir: the run directory (the trainer's `train_dir`, parent of `train/` and
      `eval_validation/`).
    hparams: dict name -> value (bool, int, float, str; None, lists and numpy
      scalars are converted), in the order the HPARAMS tab should show them
      (stored as tensorboard_key(position, name), displayed as name).
    metrics: metrics the HPARAMS tab shows, each "group/tag" (group = the
      sub-directory of `logdir` holding the scalar `tag`), a bare trainer or
      evaluator tag ("accuracy" -> eval_validation/accuracy, "total_loss" ->
      train/total_loss, ...) or a (group, tag) pair ("" = `logdir` itself).
    trial_id: the session group's name in the HPARAMS tab; default: the run
      directory's name and its parent's, e.g. "mobilenet_v1_025 (demo)"
      (default_trial_id): the table names runs, not hashes, the run's own name
      first (the Trial ID column is narrow), and two studies' runs of one model
      under one --logdir stay two trials (TensorBoard merges equal names).

  Returns:
    The dict of values actually logged.
  """
  if not isinstance(hparams, dict) or not hparams:
    raise ValueError(f"log_hparams needs a non-empty dict of hyper-parameters, got {hparams!r}.")
  values = {str(name): _to_hparam_value(name, value) for name, value in hparams.items()}
  keys = {name: tensorboard_key(i, name) for i, name in enumerate(values)}
  config_hparams = [hp.HParam(keys[name], display_name=name) for name in values]
  config_metrics = [_metric(m) for m in metrics]
  writer = tf.summary.create_file_writer(logdir)
  try:
    with writer.as_default():
      hp.hparams_config(hparams=config_hparams, metrics=config_metrics)
      hp.hparams({keys[name]: value for name, value in values.items()},
                 trial_id=trial_id or default_trial_id(logdir))
    writer.flush()
  finally:
    writer.close()
  logging.info("Logged %d hparams for TensorBoard's HPARAMS tab in %s", len(values), logdir)
  return values
