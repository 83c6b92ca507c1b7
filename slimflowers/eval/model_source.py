"""Which model a checkpoint holds: one reader for the evaluator, the export and predict.

    source = model_source.resolve_source("runs/demo/cifarnet/eval_validation/best", dataset_dir=None)
    model, step = model_source.build_model(source, use_ema=False)   # float32, restored as the evaluator restores
    source.model_name, source.num_classes, source.image_size, source.preprocessing_name, source.class_names

Where each fact comes from, in order: the checkpoint's own `model_config` (the trainer writes it into every
checkpoint), else the run's run_info.json (`recorded_model`: a model-only copy such as eval_*/best, or an older
run), else the net's defaults. The evaluator, which may start before any checkpoint exists, asks
`resolve_model` (its flags, else run_info.json, else the net's).
"""
import contextlib
import dataclasses
import os

from absl import logging
import tensorflow as tf

import nets
from datasets import records
from slimflowers.core import checkpoints
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.eval import exact as exact_eval

# The auxiliary head (Inception-v3) is a training device: evaluation, serving and predict read the main logits
# (a restore with expect_partial ignores the head's variables).
TRAINING_ONLY_OVERRIDES = ("aux_logits",)


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Everything needed to rebuild and describe the model a checkpoint holds."""
  prefix: str
  train_dir: str
  model_name: str
  num_classes: int
  overrides: dict
  image_size: int
  preprocessing_name: str
  class_names: tuple


def inference_overrides(overrides):
  """The net overrides a model built for inference takes: the run's, without the training-only ones."""
  return {k: v for k, v in (overrides or {}).items() if k not in TRAINING_ONLY_OVERRIDES}


def recorded_model(train_dir):
  """What the run's run_info.json says of its model (values None when it does not say)."""
  info = run_dir.read_run_info(train_dir)
  return {"model_name": info.get("model_name"), "num_classes": info.get("num_classes"),
          "overrides": dict(info.get("model_overrides") or {}), "image_size": info.get("image_size"),
          "preprocessing_name": info.get("preprocessing_name")}


def resolve_model(train_dir, model_name, image_size, preprocessing_name):
  """(net spec, image size, preprocessing, overrides) for the evaluator: its flags, else what the run trained
  with (run_info.json), else the net's. The overrides are the run's (a batch-norm epsilon changes the
  computation), without the auxiliary head."""
  recorded = recorded_model(train_dir)
  trained = recorded["model_name"]
  if model_name is None:
    if not trained:
      raise errors.BadValue(f"--model_name is not set and {train_dir} has no {run_dir.RUN_INFO} to take it from. "
                            "Pass --model_name (python -m nets lists them).")
    model_name = trained
  with errors.as_user_errors():
    spec = nets.get_spec(model_name)
  if trained and trained != spec.name:
    raise errors.BadValue(f"--model_name={model_name} but {train_dir}/{run_dir.RUN_INFO} says the run trained "
                          f"{trained}. Pass --model_name={trained}.")
  image_size = image_size or recorded["image_size"] or spec.default_image_size
  preprocessing_name = preprocessing_name or recorded["preprocessing_name"] or spec.preprocessing
  return spec, image_size, preprocessing_name, inference_overrides(recorded["overrides"])


def train_dir_of(prefix):
  """The run directory of a checkpoint: its own directory, or RUN for RUN/eval_SPLIT/best/ckpt-N."""
  directory = os.path.dirname(prefix)
  parent = os.path.dirname(directory)
  if os.path.basename(directory) == run_dir.BEST_SUBDIR and os.path.basename(parent).startswith("eval_"):
    return os.path.dirname(parent)
  return directory


def model_config(prefix, train_dir):
  """The checkpoint's model_config; else (a model-only best/ copy) rebuilt from the run's run_info.json."""
  cfg = checkpoints.read_model_config(prefix)
  if cfg:
    return cfg
  recorded = recorded_model(train_dir)
  if not recorded["model_name"] or not recorded["num_classes"]:
    raise errors.BadValue(
        f"Checkpoint {prefix} holds no model_config, and {os.path.join(train_dir, run_dir.RUN_INFO)} does not say "
        "which model it is. Export a checkpoint written by train_image_classifier.py (a run directory, "
        "RUN/ckpt-STEP or RUN/eval_validation/best).")
  with errors.as_user_errors():
    spec = nets.get_spec(recorded["model_name"])
  return checkpoints.model_config(spec.name, recorded["num_classes"], recorded["overrides"],
                                  recorded["image_size"] or spec.default_image_size,
                                  recorded["preprocessing_name"] or spec.preprocessing)


def dataset_class_names(dataset_dir):
  """Class names of a converted dataset (dataset.json, else labels.txt), or None."""
  meta = records.read_metadata(dataset_dir) or {}
  if meta.get("class_names"):
    return list(meta["class_names"])
  try:
    labels = records.read_labels(dataset_dir)
  except (OSError, ValueError):
    return None
  return [labels[i] for i in sorted(labels)] if sorted(labels) == list(range(len(labels))) else None


def class_names_for(train_dir, num_classes, dataset_dir=None):
  """run_info.json's class_names, else the run's dataset's, else `dataset_dir`'s; numbers with a warning."""
  info = run_dir.read_run_info(train_dir)
  candidates = [(run_dir.RUN_INFO, lambda: info.get("class_names"))]
  for directory in (info.get("dataset_dir"), dataset_dir):
    if directory and fileio.isdir(directory):
      candidates.append((directory, lambda d=directory: dataset_class_names(d)))
  for _, names in candidates:
    names = names()
    if names and len(names) == num_classes:
      return tuple(str(n) for n in names)
  logging.warning("No class names for the %d classes of %s (no class_names in its %s, no dataset with as many "
                  "classes): labels are the class numbers. Pass --dataset_dir to name them.", num_classes,
                  train_dir, run_dir.RUN_INFO)
  return tuple(str(i) for i in range(num_classes))


def resolve_source(checkpoint_path, dataset_dir=None):
  """A ModelSource from a run directory (newest checkpoint), a ckpt-STEP prefix or an eval_*/best directory."""
  prefix = checkpoints.resolve_checkpoint(checkpoint_path)
  train_dir = train_dir_of(prefix)
  cfg = model_config(prefix, train_dir)
  with errors.as_user_errors():
    spec = nets.get_spec(cfg["model_name"])
  return ModelSource(
      prefix=prefix, train_dir=train_dir, model_name=spec.name, num_classes=int(cfg["num_classes"]),
      overrides=dict(cfg.get("overrides") or {}), image_size=int(cfg["image_size"]),
      preprocessing_name=cfg["preprocessing_name"],
      class_names=class_names_for(train_dir, int(cfg["num_classes"]), dataset_dir))


@contextlib.contextmanager
def float32_policy():
  """Builds under the float32 Keras policy (a mixed-precision run exports as float32), then restores the global one."""
  import keras  # pylint: disable=g-import-not-at-top
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float32")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def build_model(source, *, use_ema=False):
  """The checkpoint's model in float32, restored as the evaluator restores it. Returns (model, global step)."""
  with float32_policy():
    with errors.as_user_errors():
      model = nets.get_model(source.model_name, source.num_classes, **inference_overrides(source.overrides))
  # Built before the restore: a restore into unbuilt layers is deferred and could be skipped silently.
  model(tf.zeros([1, source.image_size, source.image_size, 3]), training=False)
  step = exact_eval.restore(model, source.prefix, use_ema=use_ema)
  return model, step
