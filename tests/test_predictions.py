"""predictions.csv: every example once, in record order, from the exact pass; on any filesystem; named by its row."""
import os

import numpy as np
import pytest
import tensorflow as tf

from slimflowers.eval import outputs as eval_outputs
from slimflowers.eval import exact as exact_eval
from slimflowers.core import fileio
from slimflowers.eval import metrics
from slimflowers.eval import predictions
from slimflowers.core import run_dir
from tests.test_evaluate import FakeTrainer
from tests.test_evaluate import NUM_CLASSES
from tests.test_evaluate import SPLIT
from tests.test_evaluate import make_model
from tests.test_evaluate import padded_batches
from tests.test_evaluate import split_data


def _evaluator(devices, batch_size):
  strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = make_model()
  return exact_eval.ExactEvaluator(model, padded_batches(*split_data(), batch_size), strategy,
                                   num_classes=NUM_CLASSES, global_batch_size=batch_size, expected_examples=SPLIT)


def _softmax(logits):
  shifted = logits - logits.max(axis=1, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("devices,batch_size", [(["/cpu:0"], 8), (["/cpu:0", "/cpu:1"], 4)])
def test_every_example_once_in_order_matching_the_counts(tmp_path, devices, batch_size):
  """A random net on 30 examples, batches that do not divide the split (padding), one and two replicas."""
  assert SPLIT % batch_size
  trainer = FakeTrainer(str(tmp_path / "train"))
  prefix = trainer.save(7, "random")
  evaluator = _evaluator(devices, batch_size)
  images, labels = split_data()
  names = [f"img{i}.jpg" for i in range(SPLIT)]
  per_example = predictions.PerExample(names, labels)
  eval_dir = str(tmp_path / "eval_test")
  outputs = eval_outputs.Outputs(eval_dir, keep_best=False)
  try:
    result, confusion = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="test", outputs=outputs,
                                                       per_example=per_example)
  finally:
    outputs.close()
  logits = images.reshape(SPLIT, -1) @ trainer.model.get_layer("logits").kernel.numpy()
  logits += trainer.model.get_layer("logits").bias.numpy()
  reference = metrics.numpy_metrics(logits, labels)
  assert result["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)
  (row,) = run_dir.read_results(eval_dir)
  assert row["predictions"]["rows"] == SPLIT and row["predictions"]["file"] == "predictions.csv"
  path = predictions.checked_path(eval_dir, row)
  assert path == os.path.join(eval_dir, "predictions.csv")
  header = fileio.read_text(path).splitlines()[0]
  assert header == ("filename,label,prediction,probability,label_probability,top1,top1_probability,top2,"
                    "top2_probability,top3,top3_probability,top4,top4_probability,top5,top5_probability")
  got = predictions.read(path)
  assert got["filename"] == names  # every example once, in record order
  np.testing.assert_array_equal(got["label"], labels)
  np.testing.assert_array_equal(got["prediction"], logits.argmax(axis=1))
  np.testing.assert_array_equal(got["top"][:, 0], got["prediction"])
  probs = _softmax(logits)
  np.testing.assert_allclose(got["probability"], probs.max(axis=1), rtol=1e-5)
  np.testing.assert_allclose(got["label_probability"], probs[np.arange(SPLIT), labels], rtol=1e-5)
  np.testing.assert_array_equal(got["top"], np.argsort(-probs, axis=1, kind="stable")[:, :5])
  assert int((got["prediction"] == got["label"]).sum()) == int(np.trace(confusion))


def test_a_wrong_order_is_an_error_not_a_wrong_file(tmp_path):
  trainer = FakeTrainer(str(tmp_path / "train"))
  prefix = trainer.save(1, "random")
  _, labels = split_data()
  per_example = predictions.PerExample([str(i) for i in range(SPLIT)], np.roll(labels, 1))
  with pytest.raises(RuntimeError, match="another order than the records"):
    exact_eval.evaluate_checkpoint(prefix, _evaluator(["/cpu:0"], 8), split_name="test", per_example=per_example)


def test_written_on_a_remote_filesystem_and_a_replaced_file_is_not_taken_for_the_row():
  eval_dir = "ram://predictions_test/eval_test"
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
  record = predictions.write(eval_dir, ["a.jpg", "b,c.jpg"], [0, 1], probs)
  path = eval_dir + "/predictions.csv"
  assert fileio.exists(path) and not [n for n in fileio.listdir(eval_dir) if fileio.TMP_MARK in n]
  assert predictions.checked_path(eval_dir, {"predictions": record}) == path
  got = predictions.read(path)
  assert got["filename"] == ["a.jpg", "b,c.jpg"] and got["top"].shape == (2, 3)
  np.testing.assert_array_equal(got["prediction"], [0, 2])
  np.testing.assert_allclose(got["label_probability"], [0.7, 0.3])
  predictions.write(eval_dir, ["a.jpg", "b,c.jpg"], [0, 1], probs[::-1])  # a later evaluation
  assert predictions.checked_path(eval_dir, {"predictions": record}) is None
  assert predictions.checked_path(eval_dir, {}) is None


def test_floats_have_six_significant_digits_and_ties_follow_the_prediction():
  text = predictions.format_csv(["x"], [1], [[0.5, 0.5, 1e-9]], predictions=[1])
  assert text.splitlines()[1] == "x,1,1,0.5,0.5,1,0.5,0,0.5,2,1e-09"
  text = predictions.format_csv(["x"], [0], [[1 / 3, 2 / 3]])
  assert text.splitlines()[1] == "x,0,1,0.666667,0.333333,1,0.666667,0,0.333333"
  with pytest.raises(ValueError, match="predictions header"):
    fileio.write_text_atomic("ram://predictions_test/bad.csv", "a,b,c\n")
    predictions.read("ram://predictions_test/bad.csv")
