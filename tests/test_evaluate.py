"""The evaluator: restoring, results.jsonl, summaries, best/, and the continuous loop beside a (fake) trainer.

The fake trainer writes checkpoints exactly as ARCHITECTURE.md says the real
one does (CheckpointManager, prefix ckpt, global_step/model/optimizer/ema_model,
run_info.json). Its weights are chosen so each checkpoint's accuracy is known:
images are one-hot patterns of their label, so the "oracle" kernel scores 100 %.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimflowers.core import checkpoints
from slimflowers.eval import outputs as eval_outputs
from slimflowers.eval import watch as eval_watch
from slimflowers.eval import program as evaluate
from slimflowers.eval import exact as exact_eval
from slimflowers.core import fileio
from slimflowers.eval import metrics
from slimflowers.eval import predictions
from slimflowers.core import run_dir
from tests import tiny_data

NUM_CLASSES = 5
SPLIT = 30
SIZE = 4  # images SIZE x SIZE x 3


def split_data():
  labels = np.arange(SPLIT, dtype=np.int32) % NUM_CLASSES
  images = np.zeros((SPLIT, SIZE, SIZE, 3), np.float32)
  images.reshape(SPLIT, -1)[np.arange(SPLIT), labels] = 1.0
  return images, labels


def padded_batches(images, labels, batch_size):
  n = len(labels)
  pad = -(-n // batch_size) * batch_size - n
  return tf.data.Dataset.from_tensor_slices({
      "image": np.concatenate([images, np.zeros((pad,) + images.shape[1:], np.float32)]),
      "label": np.concatenate([labels, np.zeros([pad], np.int32)]),
      "mask": np.concatenate([np.ones([n], np.float32), np.zeros([pad], np.float32)]),
      "filename": np.array([f"img{i}.jpg" for i in range(n)] + [""] * pad),
  }).batch(batch_size)


def make_model():
  inputs = keras.Input((SIZE, SIZE, 3))
  x = keras.layers.Flatten()(inputs)
  return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(x))


def kernel(kind, seed=0):
  """Dense kernel giving a known accuracy: oracle 1.0, zeros 0.2 (always class 0), shifted 0.0."""
  k = np.zeros([SIZE * SIZE * 3, NUM_CLASSES], np.float32)
  if kind == "oracle":
    k[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = 5.0
  elif kind == "shifted":  # predicts label + 1: always wrong
    k[np.arange(NUM_CLASSES), (np.arange(NUM_CLASSES) + 1) % NUM_CLASSES] = 5.0
  elif kind == "random":
    k = np.random.default_rng(seed).normal(size=k.shape).astype(np.float32)
  return k


EXPECTED_ACCURACY = {"oracle": 1.0, "zeros": 0.2, "shifted": 0.0}


class FakeTrainer:
  """Writes checkpoints the way train.py does (same object graph, CheckpointManager, run_info.json)."""

  def __init__(self, train_dir, ema=False, max_to_keep=20):
    self.train_dir = train_dir
    self.model = make_model()
    self.ema_model = make_model() if ema else None
    self.optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    self.optimizer.build(self.model.trainable_variables)
    self.global_step = tf.Variable(0, dtype=tf.int64)
    parts = {"global_step": self.global_step, "model": self.model, "optimizer": self.optimizer}
    if ema:
      parts["ema_model"] = self.ema_model
    self.manager = tf.train.CheckpointManager(tf.train.Checkpoint(**parts), train_dir, max_to_keep=max_to_keep,
                                              checkpoint_name="ckpt")

  def save(self, step, kind, ema_kind=None):
    self.model.get_layer("logits").kernel.assign(kernel(kind, seed=step))
    if self.ema_model is not None:
      self.ema_model.get_layer("logits").kernel.assign(kernel(ema_kind or kind, seed=step))
    self.global_step.assign(step)
    return self.manager.save(checkpoint_number=step)

  def run_info(self, max_steps, final_step=None):
    info = {"model_name": "fake", "max_steps": max_steps, "finished": final_step is not None}
    if final_step is not None:
      info["final_step"] = final_step
    fileio.write_json_atomic(os.path.join(self.train_dir, "run_info.json"), info)


def make_evaluator(batch_size=8):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"], cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = make_model()
  return exact_eval.ExactEvaluator(model, padded_batches(*split_data(), batch_size), strategy,
                                 num_classes=NUM_CLASSES, global_batch_size=batch_size, expected_examples=SPLIT)


@pytest.fixture(scope="module")
def evaluator():
  return make_evaluator()


def continuous(train_dir, evaluator, eval_dir, **kwargs):
  """The library's continuous loop wired like evaluate.run does; returns (steps evaluated, Outputs)."""
  outputs = eval_outputs.Outputs(eval_dir)

  def evaluate_fn(prefix):
    result, _ = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation", outputs=outputs)
    return result["step"]

  kwargs.setdefault("eval_interval_secs", 0.05)
  kwargs.setdefault("eval_timeout_secs", 30)
  try:
    steps = eval_watch.run_continuous(train_dir, evaluate_fn, done_steps=outputs.done_steps, **kwargs)
  finally:
    outputs.close()
  return steps, outputs


def event_scalars(eval_dir):
  """{tag: {step: value}} from the event files (what TensorBoard shows)."""
  found = {}
  for path in glob.glob(os.path.join(eval_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        found.setdefault(value.tag, {})[event.step] = array.item() if array.ndim == 0 else array
  return found


def steps_in(eval_dir):
  return [r["step"] for r in run_dir.read_results(eval_dir)]


# --- finding and restoring checkpoints ----------------------------------------

def test_resolve_checkpoint(tmp_path):
  trainer = FakeTrainer(str(tmp_path / "train"))
  first = trainer.save(10, "zeros")
  last = trainer.save(20, "oracle")
  assert checkpoints.resolve_checkpoint(str(tmp_path / "train")) == last
  assert checkpoints.resolve_checkpoint(first) == first
  assert checkpoints.resolve_checkpoint(first + ".index") == first
  assert checkpoints.list_checkpoints(str(tmp_path / "train")) == [first, last]
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="without checkpoints") as e:
    checkpoints.resolve_checkpoint(str(tmp_path / "empty"))
  assert "--continuous" not in str(e.value)  # predict and export read checkpoints too: an evaluator's flag is not
  with pytest.raises(FileNotFoundError, match="without checkpoints.*Or add --continuous"):  # theirs to suggest
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(tmp_path / "empty"), dataset_name="folder",
                 dataset_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="ckpt-99"):
    checkpoints.resolve_checkpoint(str(tmp_path / "train" / "ckpt-99"))
  assert checkpoints.read_global_step(last) == 20


def test_evaluate_once_writes_results_summaries_and_best(tmp_path, evaluator, capsys):
  trainer = FakeTrainer(str(tmp_path / "train"))
  prefix = trainer.save(7, "oracle")
  eval_dir = str(tmp_path / "train" / "eval_validation")
  outputs = eval_outputs.Outputs(eval_dir)
  result, confusion = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation", outputs=outputs)
  outputs.close()
  assert set(exact_eval.RESULT_KEYS) <= set(result)
  assert (result["step"], result["checkpoint"], result["num_examples"]) == (7, prefix, SPLIT)
  assert result["accuracy"] == 1.0 and result["mean_per_class_accuracy"] == 1.0
  np.testing.assert_array_equal(confusion, np.eye(NUM_CLASSES) * (SPLIT // NUM_CLASSES))
  # results.jsonl holds the same record; the console printed it.
  (line,) = run_dir.read_results(eval_dir)
  assert {k: line[k] for k in exact_eval.RESULT_KEYS} == {k: result[k] for k in exact_eval.RESULT_KEYS}
  assert "step 7: accuracy=1.0000" in capsys.readouterr().out
  # TensorBoard: the four scalars and the confusion-matrix image, at the checkpoint's step.
  scalars = event_scalars(eval_dir)
  for key in metrics.EVAL_METRICS:
    assert scalars[key] == {7: pytest.approx(result[key])}
  assert set(scalars["confusion_matrix"]) == {7}
  # best/ is a restorable copy (not a link to train_dir) with best.json.
  best_dir = os.path.join(eval_dir, "best")
  with open(os.path.join(best_dir, "best.json")) as f:
    best = json.load(f)
  assert (best["step"], best["checkpoint"], best["metrics"]["accuracy"]) == (7, prefix, 1.0)
  copied = tf.train.latest_checkpoint(best_dir)
  assert os.path.dirname(copied) == best_dir and not os.path.islink(copied + ".index")
  model = make_model()
  assert exact_eval.restore(model, copied) == 7
  np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), kernel("oracle"))
  # The evaluator wrote nothing into train_dir except its eval_dir.
  assert sorted(os.listdir(tmp_path / "train")) == sorted(
      ["checkpoint", "ckpt-7.index", "ckpt-7.data-00000-of-00001", "eval_validation"])


def test_use_ema_restores_the_moving_averages(tmp_path, evaluator):
  trainer = FakeTrainer(str(tmp_path / "ema"), ema=True)
  prefix = trainer.save(5, "shifted", ema_kind="oracle")
  plain, _ = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation")
  ema, _ = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation", use_ema=True)
  assert (plain["accuracy"], ema["accuracy"]) == (0.0, 1.0)
  no_ema = FakeTrainer(str(tmp_path / "plain")).save(5, "oracle")
  with pytest.raises(ValueError, match="did not use --moving_average_decay"):
    exact_eval.evaluate_checkpoint(no_ema, evaluator, split_name="validation", use_ema=True)


def test_wrong_model_is_a_clear_error(tmp_path, evaluator):
  inputs = keras.Input((SIZE, SIZE, 3))
  other = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inputs)))
  prefix = tf.train.Checkpoint(global_step=tf.Variable(1, dtype=tf.int64), model=other).write(
      str(tmp_path / "ckpt-1"))
  with pytest.raises(ValueError, match="--model_name"):
    exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation")


def test_predictions_print_true_and_predicted_labels(tmp_path, evaluator):
  prefix = FakeTrainer(str(tmp_path)).save(1, "shifted")
  exact_eval.restore(evaluator.model, prefix)
  found = exact_eval.predictions(evaluator.model, evaluator.dataset, 3)
  assert [(f, t, p) for f, t, p, _ in found] == [("img0.jpg", 0, 1), ("img1.jpg", 1, 2), ("img2.jpg", 2, 3)]
  text = exact_eval.format_predictions(found, {0: "daisy", 1: "dandelion", 2: "roses", 3: "sunflowers"})
  assert text.splitlines()[0].startswith("img0.jpg true=daisy pred=dandelion (p=0.9")


# --- best/ --------------------------------------------------------------------

def test_best_keeps_earliest_on_ties_survives_restart_and_rotation(tmp_path, evaluator):
  train_dir, eval_dir = str(tmp_path / "train"), str(tmp_path / "eval")
  trainer = FakeTrainer(train_dir)
  outputs = eval_outputs.Outputs(eval_dir)
  for step, kind in [(1, "zeros"), (2, "oracle"), (3, "oracle"), (4, "shifted")]:
    exact_eval.evaluate_checkpoint(trainer.save(step, kind), evaluator, split_name="validation", outputs=outputs)
  outputs.close()
  assert outputs.best["step"] == 2
  # Restarted: best.json is read back, a worse checkpoint does not replace it.
  outputs = eval_outputs.Outputs(eval_dir)
  assert outputs.best["step"] == 2 and outputs.done_steps == {1, 2, 3, 4}
  exact_eval.evaluate_checkpoint(trainer.save(5, "zeros"), evaluator, split_name="validation", outputs=outputs)
  assert checkpoints.resolve_checkpoint(os.path.join(eval_dir, "best")).endswith("ckpt-2")
  # A better checkpoint rotated away before the copy: the evaluated weights are kept instead.
  trainer.save(6, "random")
  prefix = trainer.save(7, "random")
  exact_eval.restore(evaluator.model, prefix)
  evaluator.model.get_layer("logits").kernel.assign(kernel("oracle"))
  for path in checkpoints.checkpoint_files(prefix):
    os.remove(path)
  outputs.best["metrics"]["accuracy"] = 0.5  # pretend the old best was worse
  result = {"step": 7, "checkpoint": prefix, "split": "validation", "num_examples": SPLIT, "accuracy": 0.9,
            "top_5_accuracy": 1.0, "loss": 0.1, "mean_per_class_accuracy": 0.9}
  outputs.record(result, np.eye(NUM_CLASSES), model=evaluator.model)
  outputs.close()
  with open(os.path.join(eval_dir, "best", "best.json")) as f:
    assert json.load(f)["copied_from"].startswith("evaluated weights")
  model = make_model()
  assert exact_eval.restore(model, checkpoints.resolve_checkpoint(os.path.join(eval_dir, "best"))) == 7
  np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), kernel("oracle"))
  assert not glob.glob(os.path.join(eval_dir, "best.*tmp*")) and not glob.glob(os.path.join(eval_dir, "best.old*"))


# --- continuous mode ----------------------------------------------------------

def test_continuous_beside_a_trainer_then_restart(tmp_path, evaluator):
  """The fake trainer saves the next checkpoint once the previous one is evaluated (or after 10 s)."""
  train_dir = str(tmp_path / "train")
  eval_dir = os.path.join(train_dir, "eval_validation")
  plan = [(10, "zeros"), (20, "oracle"), (30, "shifted"), (40, "zeros")]
  errors = []

  def train():
    try:
      trainer = FakeTrainer(train_dir)
      trainer.run_info(max_steps=40)
      for step, kind in plan:
        trainer.save(step, kind)
        deadline = time.time() + 10
        while step not in steps_in(eval_dir) and time.time() < deadline:
          time.sleep(0.05)
      trainer.run_info(max_steps=40, final_step=40)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  thread = threading.Thread(target=train)
  start = time.time()
  thread.start()  # the evaluator starts before train_dir even exists
  steps, outputs = continuous(train_dir, evaluator, eval_dir)
  thread.join()
  assert not errors
  assert time.time() - start < 30, "the evaluator should exit on its own after the final step"
  assert steps == [10, 20, 30, 40] == steps_in(eval_dir)
  accuracies = [r["accuracy"] for r in run_dir.read_results(eval_dir)]
  assert accuracies == [EXPECTED_ACCURACY[k] for _, k in plan]
  scalars = event_scalars(eval_dir)
  assert scalars["accuracy"] == pytest.approx({10: 0.2, 20: 1.0, 30: 0.0, 40: 0.2})
  assert set(scalars["loss"]) == set(scalars["confusion_matrix"]) == {10, 20, 30, 40}
  assert outputs.best["step"] == 20
  # Restarted on the finished run: nothing is re-evaluated, it exits at once.
  start = time.time()
  steps, _ = continuous(train_dir, evaluator, eval_dir)
  assert steps == [] and steps_in(eval_dir) == [10, 20, 30, 40] and time.time() - start < 5


def test_continuous_behind_evaluates_newest_and_skips_done_and_torn_line(tmp_path, evaluator):
  train_dir, eval_dir = str(tmp_path / "train"), str(tmp_path / "eval")
  trainer = FakeTrainer(train_dir)
  for step in (10, 20, 30, 40, 50):
    trainer.save(step, "zeros")
  trainer.run_info(max_steps=100)
  os.makedirs(eval_dir)
  with open(os.path.join(eval_dir, "results.jsonl"), "w") as f:
    f.write(json.dumps({"step": 20, "accuracy": 0.2}) + "\n" + '{"step": 30, "accur')  # killed mid-write
  steps, _ = continuous(train_dir, evaluator, eval_dir, eval_timeout_secs=0.3)
  assert steps == [50]  # behind: newest only; exits after the timeout (run not finished)
  assert steps_in(eval_dir) == [20, 50]
  trainer.save(60, "oracle")
  trainer.run_info(max_steps=100, final_step=60)
  steps, _ = continuous(train_dir, evaluator, eval_dir)
  assert steps == [60]


def test_vanished_half_written_and_corrupt_checkpoints_are_skipped(tmp_path, evaluator, caplog):
  train_dir, eval_dir = str(tmp_path / "train"), str(tmp_path / "eval")
  trainer = FakeTrainer(train_dir)
  trainer.save(10, "oracle")
  half = trainer.save(20, "zeros")
  corrupt = trainer.save(30, "zeros")
  rotated = trainer.save(40, "zeros")
  os.remove(half + ".data-00000-of-00001")  # index without data
  with open(corrupt + ".index", "wb") as f:
    f.write(b"not a checkpoint index")
  outputs = eval_outputs.Outputs(eval_dir)
  calls = []

  def evaluate_fn(prefix):
    calls.append(os.path.basename(prefix))
    if prefix == rotated:  # rotated away between listing and reading
      for path in checkpoints.checkpoint_files(prefix):
        os.remove(path)
    result, _ = exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation", outputs=outputs)
    return result["step"]

  steps = eval_watch.run_continuous(train_dir, evaluate_fn, eval_interval_secs=0.05, eval_timeout_secs=0.5)
  outputs.close()
  assert steps == [10] and steps_in(eval_dir) == [10]
  assert calls == ["ckpt-40", "ckpt-10"]
  warnings = " ".join(r.getMessage() for r in caplog.records)
  for name in ("ckpt-20", "ckpt-30", "ckpt-40"):
    assert name in warnings


def test_final_step_from_max_steps_ends_without_run_info_finished(tmp_path, evaluator):
  trainer = FakeTrainer(str(tmp_path / "train"))
  trainer.run_info(max_steps=30)
  trainer.save(30, "oracle")
  steps, _ = continuous(str(tmp_path / "train"), evaluator, str(tmp_path / "eval"), eval_timeout_secs=60)
  assert steps == [30]


# --- end to end: the real datasets / nets / input pipeline and scripts ---------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_SCRIPT = os.path.join(ROOT, "eval_image_classifier.py")


@pytest.fixture(scope="module")
def real_data(tiny_dataset):
  """conftest.py's 3 classes x 12 tiny JPEGs, converted by the real converter: a validation split of 9."""
  return tiny_dataset


def _eval_cmd(checkpoint_path, dataset_dir, *extra):
  return [sys.executable, EVAL_SCRIPT, f"--checkpoint_path={checkpoint_path}", "--dataset_name=folder",
          f"--dataset_dir={dataset_dir}", "--model_name=cifarnet", "--num_gpus=0", *extra]


def _save_cifarnet(train_dir, num_classes, step, *, zeros=False, train_accuracy=None):
  """A checkpoint with the trainer's object graph (random cifarnet weights; all zeros: always class 0)."""
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.core import checkpoints  # pylint: disable=g-import-not-at-top
  model = nets.get_model("cifarnet", num_classes)
  if zeros:
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build(model.trainable_variables)
  ckpt = checkpoints.make_checkpoint(global_step=tf.Variable(step, dtype=tf.int64), model=model,
                                     optimizer=optimizer)
  if train_accuracy is not None:
    ckpt.train_accuracy = tf.Variable(train_accuracy)
  tf.train.CheckpointManager(ckpt, str(train_dir), max_to_keep=5, checkpoint_name="ckpt").save(
      checkpoint_number=step)
  return model


def test_eval_script_two_replicas_matches_numpy_on_real_pipeline(real_data, tmp_path):
  """The script (2 CPU replicas, batch 4, split of 9) against numpy over the whole split in this process."""
  import datasets  # pylint: disable=g-import-not-at-top
  from slimflowers.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import metrics  # pylint: disable=g-import-not-at-top
  split = datasets.get_split("folder", "validation", real_data)
  assert split.num_samples % 4, "the split size should not divide the batch"
  train_dir = tmp_path / "train"
  model = _save_cifarnet(train_dir, split.num_classes, step=3)
  logits, labels = [], []
  import nets  # pylint: disable=g-import-not-at-top
  # The script takes the net's defaults (no run_info.json here): 32 px, cifarnet's preprocessing.
  for batch in input_pipeline.eval_dataset(split, batch_size=split.num_samples, image_size=32,
                                           preprocessing_name=nets.get_spec("cifarnet").preprocessing):
    keep = batch["mask"].numpy().reshape(-1) > 0
    logits.append(model(batch["image"], training=False).numpy()[keep])
    labels.append(batch["label"].numpy().reshape(-1)[keep])
  reference = metrics.numpy_metrics(np.concatenate(logits), np.concatenate(labels))

  proc = subprocess.run(_eval_cmd(train_dir, real_data, "--num_cpu_replicas=2", "--batch_size=4",
                                  "--print_predictions=3"), capture_output=True, text=True, cwd=ROOT, timeout=180)
  assert proc.returncode == 0, proc.stderr[-4000:]
  (result,) = run_dir.read_results(str(train_dir / "eval_validation"))
  assert result["step"] == 3 and result["num_examples"] == split.num_samples == reference["num_examples"]
  for key in ("accuracy", "top_5_accuracy", "mean_per_class_accuracy"):
    assert result[key] == pytest.approx(reference[key], abs=1e-12), key
  assert result["loss"] == pytest.approx(reference["loss"], rel=1e-4)
  assert "eval validation step 3: accuracy=" in proc.stdout
  printed = [line for line in proc.stdout.splitlines() if " pred=" in line]
  assert len(printed) == 3 and all("true=" in line and "(p=" in line for line in printed)
  first_files = [datasets.records.parse_example(r)["image/filename"].numpy().decode()
                 for r in tf.data.TFRecordDataset(split.filenames).take(3)]
  assert [line.split()[0] for line in printed] == first_files
  names = set(split.labels_to_names.values())
  assert all(line.split("true=")[1].split()[0] in names for line in printed)
  # A one-shot evaluation writes predictions.csv: every example once, in record order, as numpy predicts.
  written = run_dir.eval_dir(str(train_dir), "validation")
  assert predictions.checked_path(written, result) == os.path.join(written, "predictions.csv")
  got = predictions.read(os.path.join(written, "predictions.csv"))
  assert got["filename"] == [datasets.records.parse_example(r)["image/filename"].numpy().decode()
                             for r in tf.data.TFRecordDataset(split.filenames)]
  np.testing.assert_array_equal(got["prediction"], np.concatenate(logits).argmax(axis=1))
  np.testing.assert_array_equal(got["label"], np.concatenate(labels))
  # An untrained net: at chance on this split, so no best/ (a chance-level checkpoint is never "best").
  assert result["sanity"]["at_chance"] == (not os.path.exists(train_dir / "eval_validation" / "best" / "best.json"))
  assert not os.path.exists(train_dir / "flags.txt")


def test_run_rejects_bad_paths(real_data, tmp_path):
  strategy = tf.distribute.get_strategy()
  kwargs = dict(dataset_name="folder", dataset_dir=real_data, model_name="cifarnet")
  prefix = str(tmp_path / "ckpt-1")
  tf.train.Checkpoint(global_step=tf.Variable(1, dtype=tf.int64)).write(prefix)
  with pytest.raises(ValueError, match="--continuous watches a directory"):
    evaluate.run(strategy, checkpoint_path=prefix, continuous=True, **kwargs)
  with pytest.raises(ValueError, match="is the train_dir"):
    evaluate.run(strategy, checkpoint_path=str(tmp_path), eval_dir=str(tmp_path), **kwargs)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="without checkpoints"):
    evaluate.run(strategy, checkpoint_path=str(tmp_path / "empty"), **kwargs)
  fileio.write_json_atomic(str(tmp_path / "run_info.json"), {"model_name": "mobilenet_v1"})
  with pytest.raises(ValueError, match="--model_name=mobilenet_v1"):
    evaluate.run(strategy, checkpoint_path=prefix, **kwargs)


def test_a_continuous_evaluator_started_first_follows_a_run_as_it_appears(tiny_run, tmp_path, caplog):
  """README's two terminals, the evaluator first and without --model_name: it waits for the run to appear, learns
  the net from it, evaluates each checkpoint as it is written, and exits on its own after the final one.

  The run appears as a trainer writes it (run_info.json, then one checkpoint at a time, `finished` last), copied
  from the shared tiny run in a thread; each checkpoint waits (bounded) until the previous one was evaluated, so
  every step is evaluated. Real trainer and evaluator processes side by side: test_study.py::test_study_end_to_end.
  """
  import logging  # pylint: disable=g-import-not-at-top
  source, train_dir = tiny_run.train_dir, tmp_path / "train"
  eval_dir = train_dir / "eval_validation"
  written, problems = [], []
  waiting = threading.Event()

  class Waiting(logging.Handler):
    def emit(self, record):
      if "for a training run to appear" in record.getMessage():
        waiting.set()

  def copy(name):  # as TensorFlow and fileio write: a temporary name, then a rename
    shutil.copy(os.path.join(source, name), train_dir / (name + ".tmp"))
    os.replace(train_dir / (name + ".tmp"), train_dir / name)

  def trainer():
    try:
      assert waiting.wait(120), "the evaluator never said it waits for the run"
      train_dir.mkdir()
      info = run_dir.read_run_info(source)
      unfinished = {k: v for k, v in info.items() if k != "final_step"}
      fileio.write_json_atomic(str(train_dir / "run_info.json"), {**unfinished, "finished": False})
      for prefix in checkpoints.list_checkpoints(source):
        for path in sorted(glob.glob(prefix + ".*"), key=lambda p: p.endswith(".index")):  # the index last
          copy(os.path.basename(path))
        step = checkpoints.checkpoint_number(prefix)
        written.append(step)
        deadline = time.monotonic() + 120
        while step not in (steps_in(str(eval_dir)) if eval_dir.exists() else []) and time.monotonic() < deadline:
          time.sleep(0.05)
      copy("run_info.json")  # finished, with its final step
    except Exception as e:  # pylint: disable=broad-except
      problems.append(e)

  caplog.set_level("INFO", logger="absl")  # the evaluator's "Waiting ..." line is INFO
  handler = Waiting()
  logging.getLogger().addHandler(handler)
  thread = threading.Thread(target=trainer)
  thread.start()
  try:
    results = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                           dataset_dir=tiny_run.dataset_dir, batch_size=4, continuous=True, eval_interval_secs=0.05,
                           eval_timeout_secs=120)
  finally:
    logging.getLogger().removeHandler(handler)
    thread.join(timeout=300)
  assert not problems and not thread.is_alive(), problems
  steps = steps_in(str(eval_dir))
  assert written == [2, 4, FINAL] and steps == written, (written, steps)
  assert [r["step"] for r in results] == steps and all(r["num_examples"] == 9 for r in results)
  scalars = event_scalars(str(eval_dir))
  for key in metrics.EVAL_METRICS + ("confusion_matrix",):
    assert set(scalars[key]) == set(steps), key
  best = run_dir.read_best(str(eval_dir))
  learning = {r["step"]: r["accuracy"] for r in run_dir.read_results(str(eval_dir)) if not r["sanity"]["at_chance"]}
  if learning:  # best/ is the earliest of the highest accuracy among the results not at chance
    assert best["metrics"]["accuracy"] == max(learning.values())
    assert best["step"] == min(s for s, a in learning.items() if a == best["metrics"]["accuracy"])
  else:
    assert best == {}


def test_a_result_at_chance_or_far_below_training_is_called_out_and_never_best(real_data, tmp_path, caplog):
  """An untrained net (it answers class 0: 3 of 9, the chance level) whose trainer saw 95 % batch accuracy."""
  train_dir = tmp_path / "train"
  _save_cifarnet(train_dir, 3, step=5, zeros=True, train_accuracy=0.95)
  with caplog.at_level("WARNING"):
    (result,) = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                             dataset_dir=real_data, model_name="cifarnet", batch_size=4)
  check = result["sanity"]
  assert check["at_chance"] and check["below_training"] and check["train_accuracy"] == pytest.approx(0.95)
  assert check["uniform_chance"] == pytest.approx(1 / 3) and check["most_predicted_share"] == 1.0
  assert check["accuracy"] <= check["chance"] == max(1 / 3, check["majority_share"])
  (line,) = [r.getMessage() for r in caplog.records if "no better than chance" in r.getMessage()]
  assert f"validation accuracy {100 * check['accuracy']:.1f} % at step 5" in line
  assert "training batches reached 95.0 %" in line
  assert "Likely causes: batch-norm statistics" in line and "--learning_rate" in line
  assert run_dir.read_results(str(train_dir / "eval_validation"))[0]["sanity"]["at_chance"]
  assert not (train_dir / "eval_validation" / "best").exists() or not os.listdir(
      train_dir / "eval_validation" / "best")  # a chance-level checkpoint is never "best"


FINAL = tiny_data.TINY_RUN["max_number_of_steps"]  # the shared run's final step


@pytest.fixture
def finished_run(tiny_run, tmp_path):
  """A copy of the shared tiny run (conftest.py: finished at step 6, checkpoints at 2, 4, 6), and its dataset."""
  copy = tmp_path / "run"
  shutil.copytree(tiny_run.train_dir, copy)
  return copy, tiny_run.dataset_dir


def _evaluate_continuously(run, data, **kwargs):
  return evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(run), dataset_name="folder",
                      dataset_dir=data, batch_size=3, continuous=True, eval_interval_secs=0.02,
                      final_eval_splits=["test"], **kwargs)


def test_final_splits_wait_for_a_trainer_that_says_finished_after_its_final_checkpoint(
    finished_run, tmp_path, monkeypatch):
  """The race of issue 20, made deterministic: the run says `finished` only on the twentieth look at run_info.json
  after the evaluator recorded the final step (as a trainer still busy after its last save)."""
  copy, data = finished_run
  eval_dir = str(copy / "eval_validation")
  real = run_dir.read_run_info
  looks = []

  def trainer_busy_after_its_last_save(train_dir, strict=False):
    info = dict(real(train_dir, strict))
    if os.path.normpath(str(train_dir)) == os.path.normpath(str(copy)):
      if FINAL in run_dir.evaluated_steps(eval_dir):
        looks.append(1)
      if len(looks) < 20:
        info["finished"] = False
        info.pop("final_step", None)
    return info
  monkeypatch.setattr(run_dir, "read_run_info", trainer_busy_after_its_last_save)
  _evaluate_continuously(copy, data, eval_timeout_secs=60)
  assert len(looks) >= 20
  assert [r["step"] for r in run_dir.read_results(str(copy / "eval_test"))] == [FINAL]
  best = run_dir.read_best(eval_dir).get("step")
  if best is not None:  # no best/ when every checkpoint was at chance
    assert [r["step"] for r in run_dir.read_results(str(copy / "eval_test_best"))] == [best]
  # predictions.csv from every final evaluation: the run's final step on validation, final and best on test
  # (the best one copied when it is the final checkpoint), each the file its results row names.
  for sub in ["eval_validation", "eval_test"] + (["eval_test_best"] if best is not None else []):
    row = run_dir.read_results(str(copy / sub))[-1]
    assert predictions.checked_path(str(copy / sub), row), sub
    rows = predictions.read(str(copy / sub / "predictions.csv"))
    assert row["predictions"]["rows"] == row["num_examples"] == len(rows["label"]), sub
  (first,) = [r for r in run_dir.read_results(eval_dir) if r["step"] == 2] or [{}]
  assert "predictions" not in first  # not the final step: no file


def test_final_splits_never_silently_do_nothing(finished_run, tmp_path, caplog):
  copy, data = finished_run
  info = json.loads((copy / "run_info.json").read_text())
  info.update(finished=False, max_steps=2 * FINAL)
  del info["final_step"]
  (copy / "run_info.json").write_text(json.dumps(info))
  with caplog.at_level("WARNING"):
    _evaluate_continuously(copy, data, eval_timeout_secs=0.3, dataset_split_name="validation")
  lines = [r.getMessage() for r in caplog.records]
  assert any("--final_eval_splits=test not evaluated: the run in" in m and "has not finished (its newest checkpoint "
             f"is step {FINAL} of {2 * FINAL} steps)" in m for m in lines), lines
  assert not (copy / "eval_test").exists()
  assert not (copy / "eval_validation" / "predictions.csv").exists()  # step 4 of 8: not a final evaluation
  caplog.clear()
  with caplog.at_level("WARNING"):
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(copy), dataset_name="folder", dataset_dir=data,
                 batch_size=3, final_eval_splits=["validation", "test"])
  lines = [r.getMessage() for r in caplog.records]
  assert any("validation is the split this evaluator evaluates already" in m for m in lines), lines
  assert any(f"evaluating ckpt-{FINAL}, the checkpoint given, which is not the final checkpoint" in m
             for m in lines), lines
  assert [r["step"] for r in run_dir.read_results(str(copy / "eval_test"))] == [FINAL]


def test_a_continuous_evaluator_waits_for_its_run_to_appear(tmp_path):
  """Started before its trainer: it waits (bounded) for run_info.json instead of failing."""
  clock = [0.0]

  def sleep(secs):
    clock[0] += secs
    if clock[0] >= 3:
      fileio.write_json_atomic(str(tmp_path / "run_info.json"), {"model_name": "cifarnet"})
  info = eval_watch.wait_for_run(str(tmp_path), timeout_secs=10, interval_secs=1, sleep=sleep, clock=lambda: clock[0])
  assert info == {"model_name": "cifarnet"} and clock[0] == 3
  assert eval_watch.wait_for_run(str(tmp_path / "never"), timeout_secs=5, interval_secs=1, sleep=sleep,
                                 clock=lambda: clock[0]) == {}
  assert clock[0] == 8  # gave up after its timeout


def test_the_wrong_dataset_for_a_checkpoint_is_an_error_naming_both(real_data, tmp_path):
  from slimflowers.core import errors  # pylint: disable=g-import-not-at-top
  train_dir = tmp_path / "train"
  _save_cifarnet(train_dir, 5, step=1)
  fileio.write_json_atomic(str(train_dir / "run_info.json"), {
      "model_name": "cifarnet", "num_classes": 5, "dataset_name": "synthetic_flowers",
      "dataset_dir": "data/synthetic_flowers", "class_names": ["daisy", "dandelion", "roses", "sunflowers", "tulips"]})
  with pytest.raises(errors.BadValue, match=(r"was trained on synthetic_flowers \(5 classes, data/synthetic_flowers\), "
                                             r"but --dataset_name=folder --dataset_dir=\S+ holds folder with 3 "
                                             r"classes\. Pass the run's dataset: --dataset_name=synthetic_flowers "
                                             r"--dataset_dir=data/synthetic_flowers\.$")):
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                 dataset_dir=real_data)
