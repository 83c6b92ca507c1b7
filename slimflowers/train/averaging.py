r"""Checkpoint averaging: the weights of a run's top-N checkpoints by validation accuracy, averaged.

    python eval_image_classifier.py --checkpoint_path=runs/x --continuous --keep_top_n=5 ...   # keeps them
    python -m slimflowers.averaging --checkpoint_path=runs/x --top_n=3
    # Averaged steps 800, 600, 1000 (validation 0.842, 0.838, 0.836) -> runs/x/averaged_top3/ckpt-1000;
    # batch-norm statistics re-estimated over 50 training batches
    python eval_image_classifier.py --checkpoint_path=runs/x/averaged_top3 --dataset_split_name=test ...

The top N come from the run's `eval_validation/results.jsonl` (accuracy, ties: the earlier step), as timm's
`avg_checkpoints.py` sorts by its recorded metric (SOURCES.md §7). Each checkpoint is read from
`eval_validation/top/` (the copies an evaluator with `--keep_top_n` keeps, since the trainer rotates its own
away), else from the run directory. Every weight is averaged in float64.

Batch norm: the moving mean and variance of an average are not the statistics of the averaged weights
(each checkpoint's statistics describe its own activations; the average network's activations differ).
So they are re-estimated with PreciseBN (slimflowers/train/precise_bn.py) over `--precise_bn_batches` training
batches, as SWA recomputes them after averaging (Izmailov et al. 2018); `--precise_bn_batches=0` keeps the
averaged statistics (the cheaper, less exact choice; BENCHMARKS.md compares them). A net without batch norm
(cifarnet) needs neither.

The output, `RUN/averaged_topN/`, is a checkpoint with the trainer's object graph (model, global_step = the
newest averaged step, model_config) plus a run_info.json naming the run and the averaged steps, so the
evaluator, the export and predict take it like any run directory.
"""
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from slimflowers.core import checkpoints
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir

TOP_SUBDIR = "top"          # eval_validation/top/: the --keep_top_n copies
TOP_FILE = "top.json"
AVERAGED_FILE = "averaged.json"


def top_results(results, n):
  """The `n` best rows of a results.jsonl by accuracy (ties: the earlier step), best first; at-chance rows left
  out (as best/ leaves them out)."""
  scored = [r for r in results if isinstance(r.get("accuracy"), (int, float)) and r.get("checkpoint")
            and not (r.get("sanity") or {}).get("at_chance")]
  return sorted(scored, key=lambda r: (-r["accuracy"], int(r["step"])))[:n]


# ---------------------------------------------------------------------------------------------------------------------
# The evaluator's side: --keep_top_n


class TopKeeper:
  """Keeps copies of the N best checkpoints of an eval_dir in eval_dir/top/ (only files it wrote are removed)."""

  def __init__(self, eval_dir, n):
    if n < 1:
      raise errors.BadValue(f"--keep_top_n={n} must be >= 1 (0 keeps none).")
    self.dir, self.n = os.path.join(eval_dir, TOP_SUBDIR), int(n)

  def update(self, results):
    """Copies the top-N checkpoints not yet in top/ (one the trainer has already rotated away is named in a warning
    and the next best taken), then removes the copies that left the top N; top.json lists what top/ holds."""
    fileio.makedirs(self.dir)
    listed = fileio.read_json(os.path.join(self.dir, TOP_FILE)) or {"checkpoints": []}
    held = {int(e["step"]): e for e in listed["checkpoints"]}
    kept = {}
    for row in top_results(results, len(results)):  # a checkpoint already rotated away: the next best instead
      if len(kept) == self.n:
        break
      step = int(row["step"])
      if step in held:
        kept[step] = held[step]
        continue
      try:
        for path in checkpoints.checkpoint_files(row["checkpoint"]):
          fileio.copy(path, os.path.join(self.dir, os.path.basename(path)))
      except (checkpoints.CheckpointUnreadable, FileNotFoundError, tf.errors.NotFoundError) as e:
        logging.warning("--keep_top_n: cannot keep step %d (%s); the top list goes on without it.", step, e)
        continue
      kept[step] = {"step": step, "accuracy": row["accuracy"], "name": os.path.basename(row["checkpoint"])}
    fileio.write_json_atomic(os.path.join(self.dir, TOP_FILE),
                             {"n": self.n, "checkpoints": sorted(kept.values(), key=lambda e: -e["accuracy"])})
    for step, entry in held.items():
      if step not in kept:
        for path in fileio.glob(os.path.join(self.dir, entry["name"] + ".*")):
          fileio.remove(path)


# ---------------------------------------------------------------------------------------------------------------------
# Averaging


def find_checkpoint(train_dir, row):
  """Where the checkpoint of a results row still is: eval_validation/top/, the run directory, or best/."""
  name = os.path.basename(row["checkpoint"])
  eval_dir = run_dir.eval_dir(train_dir, "validation")
  for directory in (os.path.join(eval_dir, TOP_SUBDIR), train_dir, run_dir.best_dir(eval_dir),
                    os.path.dirname(row["checkpoint"])):
    prefix = os.path.join(directory, name)
    try:
      checkpoints.checkpoint_files(prefix)
      return prefix
    except checkpoints.CheckpointUnreadable:
      continue
  return None


def average_weights(prefixes, build_model):
  """A model (from `build_model()`) holding the float64 mean of every weight of the checkpoints `prefixes`."""
  model = build_model()
  sums = None
  for prefix in prefixes:
    source = build_model()
    tf.train.Checkpoint(model=source).read(prefix).expect_partial().assert_existing_objects_matched()
    values = [np.asarray(v.numpy(), np.float64) for v in source.weights]
    sums = values if sums is None else [a + b for a, b in zip(sums, values)]
  for v, total in zip(model.weights, sums):
    v.assign(tf.cast(total / len(prefixes), v.dtype))
  return model


def _precise_bn(model, train_dir, num_batches, dataset_dir=None):
  """Re-estimates `model`'s batch-norm statistics over `num_batches` of the run's own PreciseBN batches."""
  from slimflowers.train import precise_bn  # pylint: disable=g-import-not-at-top
  if not num_batches or not precise_bn.batch_norm_layers(model):
    return 0.0
  import datasets  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  text = fileio.read_text(os.path.join(train_dir, run_dir.FLAGS_TXT))
  args = [line.strip() for line in text.splitlines() if line.strip().startswith("--")]
  if dataset_dir:
    args.append(f"--dataset_dir={dataset_dir}")
  cfg = train.resolve_config(train_flags.parse(args))
  split = datasets.get_split(cfg.dataset_name, cfg.dataset_split_name, cfg.dataset_dir)
  estimator = precise_bn.Estimator(tf.distribute.get_strategy(), [model], train.precise_bn_dataset_fn(cfg, split),
                                   num_batches)
  return estimator()


def average_top(train_dir, top_n, *, output_dir=None, precise_bn_batches=50, dataset_dir=None):
  """Averages the run's top-N checkpoints by validation accuracy into `output_dir` (default RUN/averaged_topN).

  Returns the averaged.json record. Raises errors.BadValue/NotFound (nothing written) when the run has fewer
  than N evaluated checkpoints or some of them are gone.
  """
  import nets  # pylint: disable=g-import-not-at-top
  if top_n < 1:
    raise errors.BadValue(f"--top_n={top_n} must be >= 1.")
  train_dir = train_dir.rstrip("/")
  eval_dir = run_dir.eval_dir(train_dir, "validation")
  rows = top_results(run_dir.read_results(eval_dir), top_n)
  if len(rows) < top_n:
    raise errors.BadValue(f"{eval_dir}/{run_dir.RESULTS_FILE} has {len(rows)} evaluated checkpoint(s) above chance, "
                          f"fewer than --top_n={top_n}. Evaluate more checkpoints (eval_image_classifier.py "
                          "--continuous), or lower --top_n.")
  prefixes = [find_checkpoint(train_dir, r) for r in rows]
  gone = [int(r["step"]) for r, p in zip(rows, prefixes) if p is None]
  if gone:
    raise errors.NotFound(f"The checkpoints of step(s) {gone} (in the top {top_n} of {eval_dir}) are gone: the "
                          f"trainer keeps only its newest. Evaluate with --keep_top_n={top_n} (copies in "
                          f"{os.path.join(eval_dir, TOP_SUBDIR)}), or train with a larger --max_checkpoints_to_keep.")
  output_dir = output_dir or os.path.join(train_dir, f"averaged_top{top_n}")
  ours = fileio.exists(os.path.join(output_dir, AVERAGED_FILE))
  if fileio.exists(output_dir) and not ours:
    raise errors.BadValue(f"--output_dir={output_dir} exists and was not written by slimflowers.averaging; "
                          "nothing is written over it. Pass a new directory.")
  cfg = checkpoints.read_model_config(prefixes[0])
  if cfg is None:
    raise errors.BadValue(f"{prefixes[0]} holds no model_config: average checkpoints written by "
                          "train_image_classifier.py.")
  overrides = {k: v for k, v in (cfg.get("overrides") or {}).items() if k != "aux_logits"}

  def build():
    model = nets.get_model(cfg["model_name"], cfg["num_classes"], **overrides)
    model(tf.zeros([1, cfg["image_size"], cfg["image_size"], 3]), training=False)
    return model

  model = average_weights(prefixes, build)
  bn_secs = _precise_bn(model, train_dir, precise_bn_batches, dataset_dir)
  from slimflowers.train import precise_bn  # pylint: disable=g-import-not-at-top
  has_bn = bool(precise_bn.batch_norm_layers(model))
  bn = ("none in this net" if not has_bn else
        f"re-estimated over {precise_bn_batches} training batches (PreciseBN)" if precise_bn_batches else "averaged")
  step = max(int(r["step"]) for r in rows)
  record = {"train_dir": train_dir, "top_n": top_n, "steps": [int(r["step"]) for r in rows],
            "validation_accuracies": [r["accuracy"] for r in rows], "checkpoints": prefixes,
            "batch_norm_statistics": bn, "precise_bn_secs": bn_secs}
  with fileio.atomic_dir(output_dir, replace=ours) as tmp:
    ckpt = checkpoints.make_checkpoint(global_step=tf.Variable(step, dtype=tf.int64), model=model, model_config=cfg)
    name = f"ckpt-{step}"
    ckpt.write(os.path.join(tmp, name))
    fileio.write_text_atomic(os.path.join(tmp, "checkpoint"),
                             f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    info = {k: v for k, v in run_dir.read_run_info(train_dir).items()
            if k in ("model_name", "dataset_name", "dataset_dir", "dataset_split_name", "num_classes", "class_names",
                     "image_size", "preprocessing_name", "model_overrides")}
    info.update({"averaged_from": record, "finished": True, "final_step": step})
    run_dir.write_run_info(tmp, info)
    fileio.write_json_atomic(os.path.join(tmp, AVERAGED_FILE), record)
  logging.warning("Averaged steps %s (validation %s) -> %s/%s; batch-norm statistics: %s.",
                  ", ".join(str(s) for s in record["steps"]),
                  ", ".join(f"{a:.4f}" for a in record["validation_accuracies"]), output_dir, name, bn)
  return record


FLAGS = flags.FLAGS


def define_flags():
  """--top_n and --output_dir; --checkpoint_path, --precise_bn_batches and --dataset_dir are the trainer's own flags
  (train/flags.py: PreciseBN below reads the run's flags through them, so they cannot be defined twice)."""
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  train_flags.define_flags()
  flags.DEFINE_integer("top_n", 3, "How many of the best checkpoints (by validation accuracy) to average.")
  flags.DEFINE_string("output_dir", None, "Default: RUN/averaged_topN (replaced when it holds an earlier average).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  if not FLAGS.checkpoint_path:
    raise app.UsageError("--checkpoint_path=RUN is required: the run directory whose "
                         f"eval_validation/{run_dir.RESULTS_FILE} ranks the checkpoints.")
  average_top(FLAGS.checkpoint_path, FLAGS.top_n, output_dir=FLAGS.output_dir,
              precise_bn_batches=FLAGS.precise_bn_batches, dataset_dir=FLAGS.dataset_dir)

