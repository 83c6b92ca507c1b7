"""Checkpoint averaging (slimflowers/train/averaging.py): the evaluator's --keep_top_n, the average, its batch norm."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from slimflowers.train import averaging
from slimflowers.core import errors
from slimflowers.eval import program as evaluate
from slimflowers.eval import model_source
from slimflowers.core import fileio
from slimflowers.deploy import predict
from slimflowers.core import run_dir
from tests import tiny_data


def _write_results(train_dir, accuracies):
  """results.jsonl rows for the run's checkpoints: {step: accuracy}."""
  eval_dir = run_dir.eval_dir(str(train_dir), "validation")
  fileio.makedirs(eval_dir)
  for step, accuracy in accuracies.items():
    fileio.append_line(run_dir.results_path(eval_dir), json.dumps(
        {"step": step, "accuracy": accuracy, "checkpoint": os.path.join(str(train_dir), f"ckpt-{step}")}))
  return eval_dir


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
  """cifarnet, checkpoints at steps 2, 4, 6 and 8."""
  train_dir = tmp_path_factory.mktemp("avg") / "run"
  tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=8, save_interval_steps=2, dropout_rate=0.0)
  return train_dir, tiny_dataset


def test_top_results_rank_by_accuracy_then_earlier_step_and_skip_chance():
  rows = [{"step": 1, "accuracy": 0.5, "checkpoint": "a"}, {"step": 2, "accuracy": 0.7, "checkpoint": "b"},
          {"step": 3, "accuracy": 0.7, "checkpoint": "c"}, {"step": 4, "accuracy": 0.9, "checkpoint": "d",
                                                            "sanity": {"at_chance": True}}]
  assert [r["step"] for r in averaging.top_results(rows, 2)] == [2, 3]


def test_keep_top_n_copies_the_best_and_drops_what_leaves_the_top(run, tmp_path):
  train_dir, _ = run
  eval_dir = tmp_path / "eval"
  keeper = averaging.TopKeeper(str(eval_dir), 2)
  rows = [{"step": s, "accuracy": a, "checkpoint": str(train_dir / f"ckpt-{s}")} for s, a in ((2, 0.5), (4, 0.6))]
  keeper.update(rows)
  assert sorted(os.listdir(eval_dir / "top")) == sorted(
      [averaging.TOP_FILE] + [f"ckpt-{s}{x}" for s in (2, 4) for x in (".index", ".data-00000-of-00001")])
  rows.append({"step": 6, "accuracy": 0.8, "checkpoint": str(train_dir / "ckpt-6")})
  rows.append({"step": 8, "accuracy": 0.9, "checkpoint": str(tmp_path / "gone" / "ckpt-8")})  # rotated away
  keeper.update(rows)
  top = json.loads((eval_dir / "top" / averaging.TOP_FILE).read_text())
  assert [e["step"] for e in top["checkpoints"]] == [6, 4]
  assert not list((eval_dir / "top").glob("ckpt-2.*")) and list((eval_dir / "top").glob("ckpt-6.*"))
  with pytest.raises(errors.BadValue, match="--keep_top_n=0"):
    averaging.TopKeeper(str(eval_dir), 0)


def test_the_average_of_the_top_checkpoints_is_a_checkpoint_eval_export_and_predict_take(run, tmp_path):
  train_dir, data = run
  _write_results(train_dir, {2: 0.4, 4: 0.8, 6: 0.7, 8: 0.6})
  record = averaging.average_top(str(train_dir), 2)
  assert record["steps"] == [4, 6] and record["batch_norm_statistics"] == "none in this net"
  out = train_dir / "averaged_top2"
  assert tf.train.latest_checkpoint(str(out)) == str(out / "ckpt-6")
  four, six, averaged = (tiny_data.checkpoint_weights(str(p)) for p in
                         (train_dir / "ckpt-4", train_dir / "ckpt-6", out / "ckpt-6"))
  for k in four:
    np.testing.assert_allclose(averaged[k], (four[k] + six[k]) / 2, rtol=1e-6, atol=1e-7, err_msg=k)
  assert not np.allclose(averaged["logits/kernel"], six["logits/kernel"])
  # The evaluator, predict and the export take it like a run directory.
  (result,) = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(out / "ckpt-6"), dataset_name="folder",
                           dataset_dir=data, batch_size=9, keep_top_n=1)
  assert result["num_examples"] == 9 and os.path.exists(out / "eval_validation" / run_dir.RESULTS_FILE)
  top = json.loads((out / "eval_validation" / averaging.TOP_SUBDIR / averaging.TOP_FILE).read_text())
  assert top["n"] == 1 and [e["step"] for e in top["checkpoints"]] == ([] if result["sanity"]["at_chance"] else [6])
  assert model_source.resolve_source(str(out)).model_name == "cifarnet"
  assert "averaged_top2/ckpt-6" in predict.load_predictor(str(out)).what
  # Run again: replaces its own output; a directory it did not write is refused.
  assert averaging.average_top(str(train_dir), 2)["steps"] == [4, 6]
  (tmp_path / "mine").mkdir()
  with pytest.raises(errors.BadValue, match="was not written by slimflowers.averaging"):
    averaging.average_top(str(train_dir), 2, output_dir=str(tmp_path / "mine"))
  with pytest.raises(errors.BadValue, match="fewer than --top_n=5"):
    averaging.average_top(str(train_dir), 5)


def test_a_checkpoint_rotated_away_is_named_with_the_fix(tiny_dataset, tmp_path):
  train_dir = tmp_path / "run"
  tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=4, save_interval_steps=2, max_checkpoints_to_keep=1)
  _write_results(train_dir, {2: 0.9, 4: 0.8})
  with pytest.raises(errors.NotFound, match=r"step\(s\) \[2\].*--keep_top_n=2"):
    averaging.average_top(str(train_dir), 2)


def test_batch_norm_statistics_are_re_estimated_not_averaged(tiny_dataset, tmp_path):
  train_dir = tmp_path / "run"
  tiny_data.train(train_dir, tiny_dataset, model_name="mobilenet_v1_025", max_number_of_steps=4,
                  save_interval_steps=2, precise_bn_batches=2)
  _write_results(train_dir, {2: 0.6, 4: 0.7})
  averaging.average_top(str(train_dir), 2, output_dir=str(tmp_path / "averaged"), precise_bn_batches=0)
  record = averaging.average_top(str(train_dir), 2, output_dir=str(tmp_path / "precise"), precise_bn_batches=2)
  assert record["batch_norm_statistics"] == "re-estimated over 2 training batches (PreciseBN)"
  weights = {name: tiny_data.checkpoint_weights(str(tmp_path / name / "ckpt-4"), model_name="mobilenet_v1_025")
             for name in ("averaged", "precise")}
  stats = [k for k in weights["averaged"] if "moving_mean" in k]
  assert stats and any(not np.allclose(weights["averaged"][k], weights["precise"][k]) for k in stats)
  kernels = [k for k in weights["averaged"] if k.endswith("kernel")]
  for k in kernels:  # the weights themselves are the same average
    np.testing.assert_array_equal(weights["averaged"][k], weights["precise"][k])


def test_the_program_shares_the_trainers_flags():
  """python -m slimflowers.averaging reads the run's training flags for PreciseBN: its own flags must not clash."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  averaging.define_flags()
  train_flags.define_flags()
  for name in ("checkpoint_path", "precise_bn_batches", "dataset_dir", "top_n", "output_dir"):
    assert name in flags.FLAGS
