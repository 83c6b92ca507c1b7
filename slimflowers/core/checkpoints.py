r"""Checkpoint layout, TF-Slim-style scopes, and fine-tuning restores.

    python train_image_classifier.py ... --model_name=resnet50 \
        --checkpoint_path=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --checkpoint_exclude_scopes=logits --trainable_scopes=logits

A keras.applications weight file (full or no-top) initializes the backbone; the
head (`logits`, and `aux_logits` for Inception-v3) must be excluded, as in
TF-Slim's fine-tuning recipe.

Scopes are prefixes of Keras 3 variable paths (`v.path`, e.g. "logits/kernel",
"conv1_conv/kernel"). Restores go by variable path, not by object-graph position:
the source (one of our checkpoints, or a keras.applications weight file) is
loaded into a model of its own architecture, and weights are copied by path into
the model being trained, so a different head, an aux head switched on or off, or
a different number of classes can never silently shift weights onto the wrong layer.
"""
import json
import os
import re
import time

from absl import logging
import tensorflow as tf

import nets
from slimflowers.core import errors
from slimflowers.core import fileio

MODEL_CONFIG_KEY = "model_config/.ATTRIBUTES/VARIABLE_VALUE"
GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
WEIGHT_FILE_SUFFIXES = (".h5", ".hdf5", ".keras")
EMA_KEY = "ema_model"  # the moving averages' model in the object graph (--moving_average_decay)


def weights_key(use_ema):
  """The object-graph key of the weights a reader restores: `model`, or with --use_ema the moving averages."""
  return EMA_KEY if use_ema else "model"


def model_config(model_name, num_classes, overrides, image_size, preprocessing_name):
  """What it takes to rebuild the model a checkpoint holds; saved inside every checkpoint."""
  return {"model_name": nets.get_spec(model_name).name, "num_classes": int(num_classes),
          "overrides": dict(overrides), "image_size": int(image_size),
          "preprocessing_name": preprocessing_name}


def make_checkpoint(*, global_step, model, optimizer=None, ema_model=None,
                    model_config=None):  # pylint: disable=redefined-outer-name
  """The object graph of every training checkpoint (see ARCHITECTURE.md)."""
  items = {"global_step": global_step, "model": model}
  # Dropout's SeedGenerator states are in model.variables but not model.weights, and TF's object
  # graph does not reach them: saved explicitly so a resumed run draws the same dropout masks.
  weight_ids = {id(v) for v in model.weights}
  rng_states = [v for v in model.variables if id(v) not in weight_ids]
  if rng_states:
    items["model_rng_states"] = rng_states
  if optimizer is not None:
    items["optimizer"] = optimizer
  if ema_model is not None:
    items[EMA_KEY] = ema_model
  if model_config is not None:
    items["model_config"] = tf.Variable(json.dumps(model_config, sort_keys=True), trainable=False,
                                        dtype=tf.string)
  return tf.train.Checkpoint(**items)


class CheckpointUnreadable(Exception):
  """A checkpoint vanished, is half-written or cannot be read: skip it, never crash."""


def checkpoint_number(prefix):
  """The -STEP suffix of a checkpoint prefix (-1 when it has none)."""
  m = re.search(r"-(\d+)$", prefix)
  return int(m.group(1)) if m else -1


def checkpoint_files(prefix):
  """The .index and all .data-?????-of-N files of `prefix`; CheckpointUnreadable if any is missing."""
  index = prefix + ".index"
  data = [p for p in tf.io.gfile.glob(prefix + ".data-*-of-*") if re.search(r"\.data-\d+-of-\d+$", p)]
  if not tf.io.gfile.exists(index) or not data:
    raise CheckpointUnreadable(f"{prefix}: missing {'.index' if data else '.data-* files'} "
                               "(being written or being deleted)")
  shards = int(data[0].rsplit("-of-", 1)[1])
  if len(data) != shards:
    raise CheckpointUnreadable(f"{prefix}: {len(data)} of {shards} data shards present")
  return [index] + sorted(data)


def list_checkpoints(train_dir, warned=None):
  """Complete checkpoints (index and every data shard present) in `train_dir`, oldest first.

  A data file without its index is a checkpoint being written and is ignored
  silently; an index without data is reported once (in `warned`) and ignored.
  """
  if not tf.io.gfile.isdir(train_dir):
    return []
  found = []
  for index in tf.io.gfile.glob(os.path.join(train_dir, "*.index")):
    prefix = index[:-len(".index")]
    try:
      checkpoint_files(prefix)
    except CheckpointUnreadable as e:
      if warned is not None and prefix not in warned:
        warned.add(prefix)
        logging.warning("Skipping incomplete checkpoint %s", e)
      continue
    found.append(prefix)
  return sorted(found, key=lambda p: (checkpoint_number(p), p))


def _first_line(error):
  message = getattr(error, "message", None) or str(error) or type(error).__name__
  return " ".join(re.sub(r"\{\{[^}]*\}\}", "", message).split())[:300]


def check_readable(prefix):
  """Raises CheckpointUnreadable unless every tensor of the checkpoint at `prefix` reads completely.

  TensorFlow's bundle reader checks each tensor's length and CRC32C as it reads it, so a truncated
  or overwritten .data file (or a damaged .index) fails here, not in the middle of a restore.
  It costs one read of the checkpoint.
  """
  checkpoint_files(prefix)
  try:
    reader = checkpoint_reader(prefix)
    for key in reader.get_variable_to_dtype_map():
      reader.get_tensor(key)
  except (tf.errors.OpError, IndexError, ValueError, OSError) as e:
    raise CheckpointUnreadable(f"{prefix}: {_first_line(e)}") from e


UNREADABLE_SUFFIX = ".unreadable"


def _move_aside(prefix):
  """Renames the files of `prefix` to NAME.unreadable (never deleted); returns the new names."""
  moved = []
  for path in sorted(tf.io.gfile.glob(prefix + ".*")):
    if UNREADABLE_SUFFIX in os.path.basename(path):
      continue
    target, n = path + UNREADABLE_SUFFIX, 1
    while tf.io.gfile.exists(target):
      n += 1
      target = f"{path}{UNREADABLE_SUFFIX}-{n}"
    fileio.rename(path, target, overwrite=False)
    moved.append(target)
  return moved


def _point_state_at(directory, prefix, bad):
  """Rewrites the directory's `checkpoint` state file (what CheckpointManager and Orbit restore) to name `prefix`.

  Its list keeps the older checkpoints (so the manager still rotates them), not the bad ones.
  """
  state = tf.train.get_checkpoint_state(directory)
  names = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
  stamps = list(state.all_model_checkpoint_timestamps) if state else []
  if len(stamps) != len(names):
    stamps = [None] * len(names)
  name = os.path.basename(prefix)
  skip = {os.path.basename(p) for p in bad} | {name}
  kept = [(n, t) for n, t in zip(names, stamps) if n not in skip and checkpoint_number(n) < checkpoint_number(name)]
  # The manager pairs each path with its timestamp: without them it would forget (and never rotate) the older ones.
  kept.append((name, dict(zip(names, stamps)).get(name) or time.time()))
  tf.compat.v1.train.update_checkpoint_state(
      directory, name, all_model_checkpoint_paths=[n for n, _ in kept],
      all_model_checkpoint_timestamps=[t or time.time() for _, t in kept],
      last_preserved_timestamp=state.last_preserved_timestamp if state else None)


def newest_readable(directory, *, move_aside=False):
  """The newest checkpoint of `directory` that reads completely (check_readable), or None when it has none.

  The newest is the one the `checkpoint` state file names (else the highest ckpt-STEP); a newer one that
  does not read completely (a truncated or overwritten .data file) costs one checkpoint interval, not the
  run: each is named in a warning and the previous one is used. Its files are never deleted: left in
  place, or, with `move_aside` (the trainer, which holds the directory's lock), renamed NAME.unreadable,
  and the state file is pointed at the checkpoint used (what CheckpointManager and Orbit restore).
  Raises errors.BadValue when checkpoints exist but none reads completely.
  """
  latest = tf.train.latest_checkpoint(directory)
  listed = list(reversed(list_checkpoints(directory)))
  if latest is None:
    candidates = listed
  else:
    candidates = [latest] + [p for p in listed if checkpoint_number(p) < checkpoint_number(latest)]
  bad = []
  chosen = None
  for prefix in candidates:
    try:
      check_readable(prefix)
    except CheckpointUnreadable as e:
      bad.append((prefix, str(e).split(": ", 1)[-1]))
      continue
    chosen = prefix
    break
  if move_aside and chosen is not None and (bad or latest is None or
                                            os.path.basename(latest) != os.path.basename(chosen)):
    _point_state_at(directory, chosen, [p for p, _ in bad])
  for prefix, reason in bad:
    where = (f"its files are moved aside, never deleted: {', '.join(os.path.basename(m) for m in _move_aside(prefix))}"
             if move_aside else "its files are left in place")
    then = f"using the previous one, {os.path.basename(chosen)}" if chosen else "no older checkpoint reads either"
    logging.warning("Checkpoint %s does not read completely (%s): %s; %s.", prefix, reason, then, where)
  if chosen is None and bad:
    raise errors.BadValue(
        f"None of the {len(bad)} checkpoint(s) in {directory} reads completely (the newest, "
        f"{os.path.basename(bad[0][0])}: {bad[0][1]}); they are left in place. Use another checkpoint, or train "
        "again in a new --train_dir.")
  return chosen


def resolve_checkpoint(path):
  """A checkpoint prefix from a prefix, a `prefix.index` path or a directory (its newest checkpoint that reads).

  A directory falls back past corrupted checkpoints (newest_readable); a prefix named explicitly must read
  completely, else it is a one-line error.
  """
  if path.endswith(".index"):
    path = path[:-len(".index")]
  if tf.io.gfile.isdir(path):
    latest = newest_readable(path)
    if latest is None:
      raise errors.NotFound(
          f"--checkpoint_path={path} is a directory without checkpoints. Point it at a train_dir "
          "that holds ckpt-STEP.index files.")
    return latest
  if tf.io.gfile.exists(path + ".index"):
    try:
      check_readable(path)
    except CheckpointUnreadable as e:
      raise errors.BadValue(
          f"--checkpoint_path={path} does not read completely ({str(e).split(': ', 1)[-1]}): it is corrupted or "
          "half-written. Pass its directory to use the newest checkpoint that reads, or another checkpoint.") from e
    return path
  raise errors.NotFound(
      f"--checkpoint_path={path} is neither a directory nor a checkpoint (no {path}.index). "
      "Pass a train_dir, a prefix such as TRAIN_DIR/ckpt-1000, or (training only) a keras.applications "
      f"weight file ({', '.join(WEIGHT_FILE_SUFFIXES)}).")


def checkpoint_reader(prefix):
  """A reader of the checkpoint at `prefix` on any filesystem.

  (tf.train.load_checkpoint first asks whether the prefix is a directory, which TensorFlow's
  in-memory ram:// filesystem answers wrongly for a prefix of existing names.)
  """
  return tf.compat.v1.train.NewCheckpointReader(prefix)


def variable_names(prefix):
  return list(checkpoint_reader(prefix).get_variable_to_shape_map())


def read_global_step(prefix):
  """The training step stored in the checkpoint (falls back to the -NUMBER suffix of its name)."""
  try:
    checkpoint_files(prefix)
    reader = checkpoint_reader(prefix)
    if reader.has_tensor(GLOBAL_STEP_KEY):
      return int(reader.get_tensor(GLOBAL_STEP_KEY))
  except tf.errors.OpError as e:
    raise CheckpointUnreadable(f"{prefix}: {type(e).__name__}: {e.message}") from e
  if checkpoint_number(prefix) >= 0:
    return checkpoint_number(prefix)
  raise errors.BadValue(f"Checkpoint {prefix} has no global_step variable and no -STEP suffix; "
                   "it was not written by train_image_classifier.py.")


def read_model_config(ckpt_path):
  reader = checkpoint_reader(ckpt_path)
  if not reader.has_tensor(MODEL_CONFIG_KEY):
    return None
  value = reader.get_tensor(MODEL_CONFIG_KEY)
  return json.loads(value.decode() if isinstance(value, bytes) else value)


def _matches(path, scopes):
  """TF-Slim's scope semantics: a plain prefix of the variable path."""
  return any(path.startswith(s) for s in scopes if s)


def _all_layers(model):
  return model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access


def select_trainable(model, trainable_scopes):
  """Returns the variables to train; freezes layers with no variable under `trainable_scopes`.

  Frozen layers are set `trainable=False`, so their batch-norm statistics stay
  untouched too: variables outside the scopes stay bit-identical.
  """
  if not trainable_scopes:
    return list(model.trainable_variables)
  selected = [v for v in model.trainable_variables if _matches(v.path, trainable_scopes)]
  if not selected:
    example = sorted({v.path.split("/")[0] for v in model.trainable_variables})
    raise errors.BadValue(f"--trainable_scopes={','.join(trainable_scopes)} matches no variable of the model. "
                     f"Scopes are prefixes of variable paths; top-level scopes of this model include: "
                     f"{', '.join(example[:12])}{' ...' if len(example) > 12 else ''} (the head is 'logits').")
  for layer in _all_layers(model):
    if layer.weights and not any(_matches(v.path, trainable_scopes) for v in layer.weights):
      layer.trainable = False
  return [v for v in model.trainable_variables if _matches(v.path, trainable_scopes)]


def _source_model(path, model_name):
  """Builds a model holding the source weights: ours from a checkpoint, or a keras.applications file."""
  if path.endswith(WEIGHT_FILE_SUFFIXES):
    if not fileio.exists(path):
      raise errors.NotFound(f"Weight file {path!r} does not exist (--checkpoint_path).")
    # keras.applications files initialize the backbone only (features model, no head): the head
    # comes from our own checkpoints, never from a file whose classes may mean something else.
    return nets.get_model(model_name, 0, weights=path), path
  ckpt_path = resolve_checkpoint(path)
  cfg = read_model_config(ckpt_path)
  if cfg is None:
    raise errors.BadValue(f"{ckpt_path} is not a slimflowers checkpoint (no model_config in it). Use one written "
                     "by train_image_classifier.py, or a keras.applications weight file (.h5).")
  if cfg["model_name"] != nets.get_spec(model_name).name:
    raise errors.BadValue(f"{ckpt_path} holds a {cfg['model_name']} but --model_name={model_name}. "
                     f"Use --model_name={cfg['model_name']} or another checkpoint.")
  source = nets.get_model(cfg["model_name"], cfg["num_classes"], **cfg["overrides"])
  tf.train.Checkpoint(model=source).read(ckpt_path).expect_partial().assert_existing_objects_matched()
  return source, ckpt_path


def copy_weights(target, source, *, exclude_scopes=(), ignore_missing_vars=False, source_name="the checkpoint"):
  """Copies weights from `source` to `target` by variable path. Returns the list of restored paths."""
  by_path = {v.path: v for v in source.weights}
  missing, mismatched, restored = [], [], []
  for v in target.weights:
    if _matches(v.path, exclude_scopes):
      continue
    src = by_path.get(v.path)
    if src is None:
      missing.append(v.path)
    elif tuple(src.shape) != tuple(v.shape):
      mismatched.append(f"{v.path}: model {tuple(v.shape)} vs {source_name} {tuple(src.shape)}")
    else:
      restored.append((v, src))
  if mismatched:
    scopes = sorted({m.split("/")[0] for m in mismatched})
    raise errors.BadValue("Shapes differ between the model and " + source_name + " for:\n  " + "\n  ".join(mismatched) +
                     f"\nExclude them with --checkpoint_exclude_scopes={','.join(scopes)} (typically the "
                     "classification head, 'logits', when the number of classes differs).")
  if missing and not ignore_missing_vars:
    raise errors.BadValue(f"{len(missing)} variable(s) of the model are not in {source_name}:\n  " +
                     "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "") +
                     "\nExclude them with --checkpoint_exclude_scopes, or pass --ignore_missing_vars "
                     "to leave them at their initial values.")
  for v, src in restored:
    v.assign(tf.cast(src.value, v.dtype))
  if missing:
    logging.warning("--ignore_missing_vars: %d variable(s) not in %s left at init: %s", len(missing), source_name,
                    missing[:10])
  return [v.path for v, _ in restored]


def restore_for_fine_tuning(model, path, *, model_name, exclude_scopes=(), ignore_missing_vars=False):
  """Initializes `model` from --checkpoint_path with TF-Slim's exclude semantics. Returns the source used."""
  source, resolved = _source_model(path, model_name)
  restored = copy_weights(model, source, exclude_scopes=exclude_scopes, ignore_missing_vars=ignore_missing_vars,
                          source_name=resolved)
  logging.info("Restored %d variables from %s.", len(restored), resolved)
  return resolved
