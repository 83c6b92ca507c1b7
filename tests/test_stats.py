"""slimflowers/study/stats.py: each method against its formula, an independent implementation, or a worked example."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics as sk_metrics

from slimflowers.study import stats


@pytest.mark.parametrize("k,n", [(239, 250), (0, 20), (20, 20), (300, 350), (1, 3)])
def test_wilson_matches_scipy(k, n):
  expected = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
  low, high = stats.wilson_interval(k, n)
  assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)
  assert low <= k / n <= high


def test_wilson_the_issue_example():
  """95.6 % of 250 test images: about +-2.5 points."""
  low, high = stats.wilson_interval(239, 250)
  # centre (0.956 + 1.96^2/500) / (1 + 1.96^2/250) = 0.94910, half-width 0.02616 (by hand, z = 1.96)
  assert (round(low, 4), round(high, 4)) == (0.9229, 0.9753)
  assert stats.accuracy_interval(0.956, 250) == (low, high)
  assert stats.accuracy_interval(None, 250) == (None, None)
  assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


def test_mcnemar_exact_by_hand_and_against_scipy():
  a = np.array([1] * 10 + [1] * 1 + [0] * 6 + [0] * 3, bool)   # 10 both right, 1 only A, 6 only B, 3 both wrong
  b = np.array([1] * 10 + [0] * 1 + [1] * 6 + [0] * 3, bool)
  only_a, only_b, p = stats.mcnemar_exact(a, b)
  assert (only_a, only_b) == (1, 6)
  assert p == pytest.approx(2 * (1 + 7) / 2 ** 7)  # 2 P(X <= 1), X ~ Binomial(7, 1/2)
  assert p == pytest.approx(scipy_stats.binomtest(1, 7, 0.5).pvalue)
  assert stats.mcnemar_exact(a, a) == (0, 0, 1.0)
  assert stats.mcnemar_exact([1, 0, 1], [0, 1, 1])[2] == 1.0  # min(1, 2 * 0.75)
  with pytest.raises(ValueError, match="not evaluated on the same examples"):
    stats.mcnemar_exact([1, 0], [1])


def test_bootstrap_is_the_index_resampling_bootstrap_and_reproducible():
  rng = np.random.default_rng(1)
  a = rng.random(300) < 0.9
  b = rng.random(300) < 0.8
  low, high = stats.bootstrap_difference(a, b)
  assert (low, high) == stats.bootstrap_difference(a, b)  # fixed seed
  assert stats.bootstrap_difference(a, b, seed=5) != (low, high)
  # The textbook version: draw indices with replacement, recompute the difference.
  indices = np.random.default_rng(2).integers(0, 300, size=(20000, 300))
  naive = (a[indices].mean(axis=1) - b[indices].mean(axis=1))
  assert low == pytest.approx(np.percentile(naive, 2.5), abs=0.01)
  assert high == pytest.approx(np.percentile(naive, 97.5), abs=0.01)
  diff = stats.paired_difference(a, b)
  assert diff.difference == pytest.approx(a.mean() - b.mean()) and diff.ci_low < diff.difference < diff.ci_high
  assert stats.BOOTSTRAP_RESAMPLES >= 2000


def test_holm_worked_example():
  adjusted, rejected = stats.holm([0.01, 0.04, 0.03, 0.005])
  assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert rejected == [True, False, False, True]
  assert stats.holm([]) == ([], [])
  assert stats.holm([0.6, 0.9])[0] == [1.0, 1.0]


def test_ranks_tie_where_no_test_separates():
  acc = {"a": 0.95, "b": 0.93, "c": 0.80}
  significant = {("a", "b"): False, ("a", "c"): True, ("b", "c"): True}
  assert stats.rank_with_ties(["a", "b", "c"], acc, significant) == {"a": 1, "b": 1, "c": 3}
  significant[("a", "b")] = True
  assert stats.rank_with_ties(["c", "b", "a"], acc, significant) == {"a": 1, "b": 2, "c": 3}


def test_across_seeds():
  got = stats.across_seeds([0.9, 0.94, None])
  assert got["mean"] == pytest.approx(0.92) and got["sd"] == pytest.approx(np.std([0.9, 0.94], ddof=1))
  assert (got["min"], got["max"], got["n"]) == (0.9, 0.94, 2)
  assert stats.across_seeds([0.9])["sd"] is None and stats.across_seeds([]) == {}


def test_per_class_is_sklearns_classification_report():
  labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
  preds = [0, 1, 0, 1, 1, 2, 0, 2, 1]
  names = ["daisy", "rose", "tulip", "absent"]
  rows, summary = stats.per_class(labels, preds, names)
  report = sk_metrics.classification_report(labels, preds, labels=[0, 1, 2, 3], target_names=names,
                                            output_dict=True, zero_division=0)
  for row in rows:
    ref = report[row["class"]]
    assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
        (ref["precision"], ref["recall"], ref["f1-score"], ref["support"])), row["class"]
  assert [r["class"] for r in rows[-2:]] == ["macro avg", "weighted avg"]
  assert summary["accuracy"] == pytest.approx(6 / 9)
  assert summary["mean_per_class_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 4) / 3)  # the absent class left out


def test_most_confused_pairs():
  labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
  preds = [1, 1, 0, 2, 1, 0, 0, 1, 2]
  got = stats.most_confused(labels, preds, ["a", "b", "c"], n=2)
  assert got == [("a", "b", 2, pytest.approx(2 / 3)), ("c", "a", 2, 0.5)]
  assert len(stats.most_confused(labels, preds, ["a", "b", "c"])) == 4
