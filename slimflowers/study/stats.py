"""The statistics behind the report: how sure is an accuracy, is one model really better than another.

    low, high = stats.wilson_interval(239, 250)                     # 95 % interval of 95.6 %: (0.9229, 0.9753)
    diff = stats.paired_difference(correct_a, correct_b)            # accuracy A - B on the same images
    diff.difference, diff.ci_low, diff.ci_high, diff.p_value        # bootstrap interval, McNemar's exact p
    adjusted, rejected = stats.holm([0.01, 0.04, 0.3])              # across every pair of models
    ranks = stats.rank_with_ties(["a", "b"], {"a": 0.95, "b": 0.93}, {("a", "b"): False})

Pure functions of numbers and arrays (numpy, scipy, scikit-learn): the report reads predictions.csv files
(slimflowers/eval/predictions.py) and calls these. The methods and their sources are in SOURCES.md §6:
- one accuracy: Wilson's score interval (Wilson 1927), good for small n and accuracies near 100 % where the
  normal approximation p +- z sqrt(p(1-p)/n) leaves [0, 1] or collapses to a point;
- two models on the same images: the difference of accuracies, a paired bootstrap interval (Efron: resample the
  examples with replacement, recompute the difference), and McNemar's exact test (1947) on the examples where
  exactly one model is right (a two-sided binomial test with p = 1/2);
- many pairs: Holm's step-down correction (1979) of the McNemar p-values, so "significant" holds at 5 % for the
  whole table, not for each cell;
- per class: scikit-learn's precision, recall, F1, support with macro and weighted averages.
"""
import dataclasses
import math

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05                 # the level of the paired tests (after Holm's correction)
BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0
MOST_CONFUSED = 10


def z_value(confidence=CONFIDENCE):
  """The two-sided normal quantile (1.959964 for 95 %)."""
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  return float(scipy_stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(k, n, confidence=CONFIDENCE):
  """Wilson's score interval (low, high) for k successes in n trials; (nan, nan) when n == 0.

  centre = (p + z^2/2n) / (1 + z^2/n), half-width = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), p = k/n.
  """
  k, n = int(k), int(n)
  if n <= 0:
    return math.nan, math.nan
  if not 0 <= k <= n:
    raise ValueError(f"wilson_interval: {k} successes out of {n} trials.")
  z = z_value(confidence)
  p = k / n
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy, num_examples, confidence=CONFIDENCE):
  """The Wilson interval of an accuracy measured on `num_examples` (k = accuracy * n, rounded: exact counts)."""
  if accuracy is None or not num_examples:
    return None, None
  return wilson_interval(int(round(accuracy * num_examples)), int(num_examples), confidence)


def mcnemar_exact(correct_a, correct_b):
  """McNemar's exact test on paired outcomes: (b, c, two-sided p).

  b: examples A gets right and B wrong, c: the reverse; under "equally accurate" each discordant example is a fair
  coin, so p = min(1, 2 P(Binomial(b + c, 1/2) <= min(b, c))); 1.0 when the models never disagree.
  """
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  a, b_ = _paired(correct_a, correct_b)
  b = int(np.sum(a & ~b_))
  c = int(np.sum(~a & b_))
  if b + c == 0:
    return b, c, 1.0
  return b, c, float(min(1.0, 2 * scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))


def _paired(correct_a, correct_b):
  a = np.asarray(correct_a, bool).reshape(-1)
  b = np.asarray(correct_b, bool).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(f"Paired outcomes of different lengths ({a.size} and {b.size}): the two runs were not "
                     "evaluated on the same examples.")
  if not a.size:
    raise ValueError("No examples to compare.")
  return a, b


def bootstrap_difference(correct_a, correct_b, *, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED,
                         confidence=CONFIDENCE):
  """The paired bootstrap percentile interval (low, high) of accuracy(A) - accuracy(B).

  Resampling n examples with replacement and recomputing the difference: only the discordant examples change it
  (+1 where A alone is right, -1 where B alone is), so a resample's difference is (B - C) / n with
  (B, C, rest) ~ Multinomial(n; b/n, c/n, rest/n) -- the same distribution as drawing n indices, drawn without
  materializing them (a 6,149-image test split costs microseconds, not seconds). Fixed seed: the same files
  give the same interval.
  """
  a, b_ = _paired(correct_a, correct_b)
  n = a.size
  b = int(np.sum(a & ~b_))
  c = int(np.sum(~a & b_))
  rng = np.random.default_rng(seed)
  draws = rng.multinomial(n, [b / n, c / n, (n - b - c) / n], size=int(resamples))
  differences = (draws[:, 0] - draws[:, 1]) / n
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(differences, [tail, 100 - tail])
  return float(low), float(high)


@dataclasses.dataclass
class PairedDifference:
  accuracy_a: float
  accuracy_b: float
  difference: float   # accuracy_a - accuracy_b
  ci_low: float       # paired bootstrap, 95 %
  ci_high: float
  a_only: int         # examples only A gets right (McNemar's b)
  b_only: int         # examples only B gets right (c)
  p_value: float      # McNemar's exact test, two-sided, uncorrected
  num_examples: int


def paired_difference(correct_a, correct_b, **bootstrap_kwargs):
  """Everything pairwise.csv says about two runs on the same examples (`correct_*`: one bool per example)."""
  a, b_ = _paired(correct_a, correct_b)
  only_a, only_b, p = mcnemar_exact(a, b_)
  low, high = bootstrap_difference(a, b_, **bootstrap_kwargs)
  return PairedDifference(accuracy_a=float(a.mean()), accuracy_b=float(b_.mean()),
                          difference=float(a.mean() - b_.mean()), ci_low=low, ci_high=high, a_only=only_a,
                          b_only=only_b, p_value=p, num_examples=int(a.size))


def holm(p_values, alpha=ALPHA):
  """Holm's step-down correction: (adjusted p-values, rejected) in the input order.

  Sorted ascending, the i-th smallest (i from 1 of m) is compared with alpha / (m - i + 1), stopping at the first
  that is not below; the adjusted p-value max_{j <= i} min(1, (m - j + 1) p_(j)) is <= alpha exactly when rejected.
  """
  p = np.asarray(p_values, np.float64).reshape(-1)
  m = p.size
  if not m:
    return [], []
  order = np.argsort(p, kind="stable")
  adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
  adjusted = np.empty(m)
  adjusted[order] = adjusted_sorted
  return [float(v) for v in adjusted], [bool(v <= alpha) for v in adjusted]


def rank_with_ties(names, accuracies, significant):
  """{name: rank}: 1 + the number of models significantly more accurate (`significant[(x, y)]` or [(y, x)] true
  when x and y differ significantly; the more accurate one wins). Models no test separates share a rank."""
  ranks = {}
  for x in names:
    better = 0
    for y in names:
      if y != x and accuracies[y] > accuracies[x] and (significant.get((x, y)) or significant.get((y, x))):
        better += 1
    ranks[x] = 1 + better
  return ranks


def across_seeds(values):
  """{"mean", "sd" (sample standard deviation, n - 1; None for one value), "min", "max", "n"} of the finite
  values; {} when there are none."""
  values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  if not values:
    return {}
  array = np.asarray(values)
  return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(values) > 1 else None,
          "min": float(array.min()), "max": float(array.max()), "n": len(values)}


def per_class(labels, predictions, class_names):
  """scikit-learn's classification_report as rows: one per class (precision, recall, f1, support), then
  "macro avg", "weighted avg", plus {"accuracy", "mean_per_class_accuracy"} (the mean recall of the classes present,
  the Oxford Flowers papers' metric)."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  ids = list(range(len(class_names)))
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      labels, predictions, labels=ids, zero_division=0)
  rows = [{"class": str(class_names[i]), "class_id": i, "precision": float(precision[i]), "recall": float(recall[i]),
           "f1": float(f1[i]), "support": int(support[i])} for i in ids]
  for average in ("macro", "weighted"):
    p, r, f, _ = sk_metrics.precision_recall_fscore_support(labels, predictions, labels=ids, average=average,
                                                             zero_division=0)
    rows.append({"class": f"{average} avg", "class_id": None, "precision": float(p), "recall": float(r),
                 "f1": float(f), "support": int(support.sum())})
  present = support > 0
  summary = {"accuracy": float(np.mean(labels == predictions)) if labels.size else None,
             "mean_per_class_accuracy": float(recall[present].mean()) if present.any() else None}
  return rows, summary


def most_confused(labels, predictions, class_names, n=MOST_CONFUSED):
  """The `n` largest off-diagonal cells of the confusion matrix: [(true name, predicted name, count, share of the
  true class)], largest count first (ties: by true, then predicted class id)."""
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  k = len(class_names)
  confusion = np.zeros([k, k], np.int64)
  np.add.at(confusion, (labels, predictions), 1)
  totals = confusion.sum(axis=1)
  cells = [(-int(confusion[i, j]), i, j) for i in range(k) for j in range(k) if i != j and confusion[i, j]]
  return [(str(class_names[i]), str(class_names[j]), -count, -count / totals[i])
          for count, i, j in sorted(cells)[:n]]
