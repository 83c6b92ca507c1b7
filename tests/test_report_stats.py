"""The report's statistics from the evaluators' files: intervals, pairwise.csv, ranks, per-class tables, seeds.

Runs are written as the evaluator writes them (results.jsonl rows naming a predictions.csv), no training: the
numbers are checked by recomputing them by hand from the predictions files.
"""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from slimflowers.study import compare
from slimflowers.eval import predictions
from slimflowers.core import run_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["daisy", "rose", "tulip"]
N = 60


def _outcomes(right):
  """Labels and predictions of N test images; `right` a bool per image."""
  labels = np.arange(N) % 3
  preds = np.where(right, labels, (labels + 1 + np.arange(N) % 2) % 3)
  return labels, preds


def write_run(root, name, *, model, right, seed=0, val_right=None):
  """A finished run with eval_test/ (and eval_validation/) results rows whose predictions.csv is named."""
  path = os.path.join(root, name)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "run_info.json"), "w") as f:
    json.dump({"model_name": model, "dataset_name": "folder", "num_classes": 3, "class_names": CLASSES,
               "finished": True, "final_step": 10,
               "train_flags": {"model_name": model, "seed": str(seed), "learning_rate": "0.1"}}, f)
  for split, outcome in (("test", right), ("validation", right if val_right is None else val_right)):
    labels, preds = _outcomes(np.asarray(outcome, bool))
    probs = np.full([N, 3], 0.1)
    probs[np.arange(N), preds] = 0.8
    eval_dir = run_dir.eval_dir(path, split)
    record = predictions.write(eval_dir, [f"img{i:03d}.jpg" for i in range(N)], labels, probs, preds)
    row = {"step": 10, "checkpoint": "ckpt-10", "split": split, "num_examples": N,
           "accuracy": float(np.mean(preds == labels)), "top_5_accuracy": 1.0, "loss": 1.0,
           "mean_per_class_accuracy": 0.5, "predictions": record}
    with open(run_dir.results_path(eval_dir), "w") as f:
      f.write(json.dumps(row) + "\n")
  return path


def _right(count, offset=0):
  right = np.zeros(N, bool)
  right[(np.arange(count) + offset) % N] = True
  return right


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("two_models"))
  a = write_run(root, "big", model="mobilenet_v1_050", right=_right(54))          # 90 %
  b = write_run(root, "small", model="mobilenet_v1_025", right=_right(42, 10))    # 70 %, overlapping
  return root, a, b


def _csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_wilson_and_mcnemar_recomputed_by_hand_from_predictions_csv(two_models, tmp_path):
  root, a, b = two_models
  out = str(tmp_path / "report")
  report = compare.write_report([a, b], out)
  by_hand = {}
  for path in (a, b):
    rows = _csv(os.path.join(path, "eval_test", "predictions.csv"))
    by_hand[os.path.basename(path)] = [r["label"] == r["prediction"] for r in rows]
  # Wilson's score interval, by its formula, z = 1.959964.
  k, n, z = sum(by_hand["big"]), len(by_hand["big"]), 1.959963984540054
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  results = {r["run"]: r for r in _csv(os.path.join(out, "results.csv"))}
  assert results["big"]["test_top1"] == f"{k / n:.4f}"
  assert results["big"]["test_top1_ci_low"] == f"{centre - half:.4f}"
  assert results["big"]["test_top1_ci_high"] == f"{centre + half:.4f}"
  # McNemar's exact test: b images only `big` gets right, c only `small`; p = 2 P(X <= min(b, c)), X ~ Bin(b+c, 1/2).
  only_a = sum(x and not y for x, y in zip(by_hand["big"], by_hand["small"]))
  only_b = sum(y and not x for x, y in zip(by_hand["big"], by_hand["small"]))
  m = only_a + only_b
  p_value = min(1.0, 2 * sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2 ** m)
  pairs = _csv(os.path.join(out, "pairwise.csv"))
  assert list(pairs[0]) == ["model_a", "model_b", "split", "accuracy_a", "accuracy_b", "difference", "ci_low",
                            "ci_high", "p_value", "p_holm", "significant", "a_only", "b_only", "num_examples"]
  (test,) = [r for r in pairs if r["split"] == "test"]
  assert (test["model_a"], test["model_b"], test["a_only"], test["b_only"]) == ("big", "small", str(only_a),
                                                                                str(only_b))
  assert float(test["p_value"]) == pytest.approx(p_value, rel=1e-5)
  assert float(test["difference"]) == pytest.approx(0.2) and float(test["ci_low"]) < 0.2 < float(test["ci_high"])
  assert test["significant"] == ("yes" if p_value <= 0.05 else "no")
  assert {r["split"] for r in pairs} == {"test", "validation"}  # both splits have predictions; no best on test
  # The sentence: the ranking on the test split, with the test named.
  assert report.analysis.ranking.startswith("Ranking on the test split (final checkpoints), 60 images: "
                                            "1. big (90.0 %), 2. small (70.0 %);")
  assert "McNemar's exact tests, Holm's correction across the 1 pair, 5 % level" in report.analysis.ranking
  with open(os.path.join(out, "results.md")) as f:
    md = f.read()
  assert report.analysis.ranking in md and "## Paired comparisons" in md and "Wilson" in md


def test_per_class_csv_and_most_confused(two_models, tmp_path):
  _, a, b = two_models
  out = str(tmp_path / "report")
  compare.write_report([a, b], out)
  rows = _csv(os.path.join(out, "per_class", "small.csv"))
  assert [r["class"] for r in rows] == CLASSES + ["macro avg", "weighted avg", "accuracy", "mean per-class accuracy"]
  data = predictions.read(os.path.join(b, "eval_test", "predictions.csv"))
  for c, row in enumerate(rows[:3]):
    tp = np.sum((data["label"] == c) & (data["prediction"] == c))
    assert row["recall"] == f"{tp / np.sum(data['label'] == c):.4f}"
    assert row["precision"] == f"{tp / np.sum(data['prediction'] == c):.4f}"
    assert row["support"] == str(np.sum(data["label"] == c))
  with open(os.path.join(out, "results.md")) as f:
    md = f.read()
  assert "Most confused (true → predicted" in md


def test_ties_when_the_difference_is_not_significant(tmp_path):
  root = str(tmp_path / "runs")
  a = write_run(root, "a", model="cifarnet", right=_right(45))
  b = write_run(root, "b", model="lenet", right=_right(44, 1))
  report = compare.write_report([a, b], str(tmp_path / "report"))
  assert report.analysis.ranks == {"a": 1, "b": 1}
  assert "1. a (75.0 %), 1. b (73.3 %); a shared rank means the difference is not significant" in (
      report.analysis.ranking)


def test_seeds_are_grouped_paired_by_seed_and_their_means_compared(tmp_path):
  root = str(tmp_path / "runs")
  paths = [write_run(root, "big", model="m50", right=_right(54), seed=0),
           write_run(root, "big-seed1", model="m50", right=_right(52, 3), seed=1),
           write_run(root, "small", model="m25", right=_right(40, 5), seed=0),
           write_run(root, "small-seed1", model="m25", right=_right(42, 7), seed=1)]
  out = str(tmp_path / "report")
  report = compare.write_report(paths, out)
  assert report.analysis.groups == {"big": ["big", "big-seed1"], "small": ["small", "small-seed1"]}
  results = {r["run"]: r for r in _csv(os.path.join(out, "results.csv"))}
  big = results["big-seed1"]
  assert (big["group"], big["seed"], big["seeds"]) == ("big", "1", "2")
  assert big["test_top1_mean"] == f"{(54 + 52) / 2 / N:.4f}"
  assert big["test_top1_sd"] == f"{np.std([54 / N, 52 / N], ddof=1):.4f}"
  assert (big["test_top1_min"], big["test_top1_max"]) == (f"{52 / N:.4f}", f"{54 / N:.4f}")
  pairs = [r for r in _csv(os.path.join(out, "pairwise.csv")) if r["split"] == "test"]
  assert [(r["model_a"], r["model_b"], r["seed"]) for r in pairs] == [("big", "small", "0"), ("big", "small", "1"),
                                                                      ("big", "small", "mean")]
  mean = pairs[2]
  assert float(mean["difference"]) == pytest.approx((54 + 52 - 40 - 42) / 2 / N)
  assert float(mean["ci_low"]) < float(mean["difference"]) < float(mean["ci_high"])
  assert 0 < float(mean["p_value"]) < 0.05
  assert "per-seed means" in report.analysis.ranking
  with open(os.path.join(out, "results.md")) as f:
    md = f.read()
  assert "## Across seeds" in md
  assert "| big | 2 | " in md and f"{100 * 53 / N:.2f} ± {100 * np.std([54 / N, 52 / N], ddof=1):.2f}" in md
  # The same training twice (same seed, e.g. two copies) is two runs to compare, not a group of seeds.
  again = write_run(str(tmp_path / "elsewhere"), "big", model="m50", right=_right(50), seed=0)
  report = compare.write_report([paths[0], again], str(tmp_path / "report2"))
  assert not report.analysis.seeds and len(report.analysis.groups) == 2


def test_compare_cli_on_runs_that_share_a_test_split(two_models, tmp_path):
  _, a, b = two_models
  out = str(tmp_path / "cli")
  proc = subprocess.run([sys.executable, "-m", "slimflowers.compare", a, b, f"--output={out}"], cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Ranking on the test split" in proc.stdout
  assert len(_csv(os.path.join(out, "pairwise.csv"))) == 2


def test_the_int8_accuracy_gets_its_interval_from_the_exports_split(tmp_path):
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "runs")
  a = write_run(root, "a", model="cifarnet", right=_right(54))
  os.makedirs(os.path.join(a, "export"))
  with open(os.path.join(a, "export", "export_report.json"), "w") as f:
    json.dump({"num_examples": N, "summary": {"verify_split": "test", "int8_top1": 0.85, "tflite_int8_mb": 1.5,
                                              "cpu_latency_ms": 2.0}}, f)
  out = str(tmp_path / "report")
  compare.write_report([a, write_run(root, "b", model="lenet", right=_right(40))], out)
  row = {r["run"]: r for r in _csv(os.path.join(out, "results.csv"))}["a"]
  interval = scipy_stats.binomtest(51, N).proportion_ci(method="wilson")
  assert (row["int8_test_top1_ci_low"], row["int8_test_top1_ci_high"]) == (f"{interval.low:.4f}",
                                                                           f"{interval.high:.4f}")
