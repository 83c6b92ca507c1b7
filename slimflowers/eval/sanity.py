"""Is an accuracy believable? Chance levels, a significance test, and the gap to training.

    check = sanity.assess(confusion, train_accuracy=0.45)
    check["at_chance"]          # True: not significantly better than always answering the largest class
    sanity.warning(check, step=400, split="validation")   # the one line a user reads, with likely causes

Chance is the better of two trivial classifiers on the evaluated split: a uniform guess (1/k for k
classes) and always answering the largest class (its share of the split). An accuracy is "at
chance" when a one-sided exact binomial test cannot tell it from that level at the 1 % level
(scipy.stats.binomtest): with 359 images and 10 balanced classes, anything below 51 right (14.2 %).
"Below training" means more than BELOW_TRAINING (30 points) under the trainer's batch accuracy
of the loop before the checkpoint (stored in the checkpoint, train.py): training learned
something that does not carry over to validation.

Who uses it: the evaluator records `sanity` with every result (results.jsonl, best.json) and warns;
best/ never holds a checkpoint at chance (eval_outputs.py); the report marks such runs (compare.py);
the export warns loudly when the checkpoint it verified is at chance (export.py).
"""
import numpy as np

SIGNIFICANCE = 0.01
BELOW_TRAINING = 0.30
# The trainer's batch accuracy, stored in every checkpoint (train.py); -1 when unknown.
TRAIN_ACCURACY_KEY = "train_accuracy/.ATTRIBUTES/VARIABLE_VALUE"
LIKELY_CAUSES = ("batch-norm statistics that do not match the weights (keep --precise_bn_batches above 0), a "
                 "learning rate too high or too low (--learning_rate), a recipe that does not suit the images "
                 "(--preprocessing_name, --crop_area_range, --random_flip), or too few steps")


def chance_levels(class_counts):
  """(uniform 1/k, largest class's share) of a split with these per-class example counts."""
  counts = np.asarray(class_counts, np.float64)
  total = counts.sum()
  return 1.0 / max(1, len(counts)), (float(counts.max() / total) if total else 0.0)


def p_value_above(correct, n, chance):
  """One-sided exact binomial p-value of `correct` hits in `n` tries against a success rate `chance`."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if n <= 0 or chance >= 1.0:
    return 1.0
  return float(stats.binomtest(int(correct), int(n), float(chance), alternative="greater").pvalue)


def assess(confusion, train_accuracy=None):
  """The believability of a result, from its confusion matrix (rows: true class) and the trainer's batch
  accuracy (None or negative: unknown). A dict stored with the result (plain JSON values)."""
  confusion = np.asarray(confusion, np.int64)
  n = int(confusion.sum())
  correct = int(np.trace(confusion))
  uniform, majority = chance_levels(confusion.sum(axis=1))
  chance = max(uniform, majority)
  accuracy = correct / n if n else 0.0
  predicted = confusion.sum(axis=0)
  check = {"chance": chance, "uniform_chance": uniform, "majority_share": majority,
           "p_value": p_value_above(correct, n, chance),
           "most_predicted_share": float(predicted.max() / n) if n else 0.0}
  check["at_chance"] = check["p_value"] >= SIGNIFICANCE
  if train_accuracy is not None and train_accuracy >= 0:
    check["train_accuracy"] = float(train_accuracy)
    check["below_training"] = float(train_accuracy) - accuracy > BELOW_TRAINING
  else:
    check["below_training"] = False
  check["accuracy"] = accuracy
  return check


def is_suspect(check):
  return bool(check) and bool(check.get("at_chance") or check.get("below_training"))


def training_learns(check):
  """True when the trainer's batch accuracy is itself clearly above chance (so a validation at chance is news)."""
  train = check.get("train_accuracy")
  return train is not None and train > check["chance"] + 0.1


def verdict(check):
  """A few words for tables: 'at chance', 'N pts below training', or ''."""
  if not check:
    return ""
  if check.get("at_chance"):
    return "at chance"
  if check.get("below_training"):
    return f"{100 * (check['train_accuracy'] - check['accuracy']):.0f} pts below training"
  return ""


def warning(check, *, step, split, with_causes=True):
  """The one line a user reads when `check` is suspect, in their terms; '' when it is not."""
  if not is_suspect(check):
    return ""
  acc = 100 * check["accuracy"]
  parts = []
  if check.get("at_chance"):
    parts.append(f"{split} accuracy {acc:.1f} % at step {step} is no better than chance ({100 * check['chance']:.1f} "
                 f"%: 1 of {round(1 / check['uniform_chance'])} classes is {100 * check['uniform_chance']:.1f} %, the "
                 f"largest class {100 * check['majority_share']:.1f} % of the split)")
    if check["most_predicted_share"] >= 0.9:
      parts[-1] += f"; it gives one class to {100 * check['most_predicted_share']:.0f} % of the images"
  else:
    parts.append(f"{split} accuracy {acc:.1f} % at step {step}")
  if check.get("train_accuracy") is not None:
    parts.append(f"training batches reached {100 * check['train_accuracy']:.1f} %")
  line = "; ".join(parts) + ": the model is not learning anything that carries over to " + split + "."
  if with_causes:
    line += f" Likely causes: {LIKELY_CAUSES}."
  return line
