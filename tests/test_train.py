"""train_image_classifier.py end to end: the real script on cifarnet and tiny data, in subprocesses.

Subprocesses because each run must set up its own devices (logical CPU replicas)
before TensorFlow starts, exactly as a user's process does.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_image_classifier.py")
BASE = ["--model_name=cifarnet", "--train_image_size=32", "--batch_size=8", "--log_every_n_steps=2",
        "--optimizer=momentum", "--learning_rate=0.05", "--save_interval_secs=0", "--dataset_name=folder"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return tiny_data.make_dataset(tmp_path_factory.mktemp("data"), num_classes=3, per_class=12)


@pytest.fixture(scope="module")
def data4(tmp_path_factory):
  return tiny_data.make_dataset(tmp_path_factory.mktemp("data4"), num_classes=4, per_class=6)


def _cmd(train_dir, dataset_dir, *extra):
  return [sys.executable, SCRIPT, f"--train_dir={train_dir}", f"--dataset_dir={dataset_dir}", *BASE, *extra]


def _train(train_dir, dataset_dir, *extra, expect_ok=True):
  proc = subprocess.run(_cmd(train_dir, dataset_dir, *extra), capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
  if expect_ok and proc.returncode != 0:
    raise AssertionError(f"trainer failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  proc.output = proc.stdout + proc.stderr  # the project's lines go to stdout, other libraries' to stderr
  return proc


_weights = tiny_data.checkpoint_weights
_scalar_tags = tiny_data.summary_steps


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
  train_dir = tmp_path_factory.mktemp("base")
  _train(train_dir, data, "--max_number_of_steps=6", "--moving_average_decay=0.9")
  return train_dir


def test_end_to_end_writes_checkpoints_flags_and_summaries(base_run, data):
  train_dir = base_run
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-6")
  flags_txt = (train_dir / "flags.txt").read_text()
  assert "--model_name=cifarnet" in flags_txt and "--preprocessing_name=inception" in flags_txt
  info = json.loads((train_dir / "run_info.json").read_text())
  assert info["finished"] and info["final_step"] == 6 and info["num_classes"] == 3
  assert info["trainable_params"] > 0 and info["images_per_sec"] > 0
  tags = _scalar_tags(train_dir / "train")
  for tag in ("total_loss", "cross_entropy", "regularization_loss", "learning_rate", "accuracy",
              "gradient_norm", "images_per_sec", "steps_per_hour", "sec_per_step", "input_images"):
    assert tag in tags, f"summary {tag} missing; have {sorted(tags)}"
  assert max(tags["total_loss"]) == 6
  # EMA weights are saved and differ from the raw weights.
  raw, ema = _weights(str(train_dir / "ckpt-6")), _weights(str(train_dir / "ckpt-6"), ema=True)
  assert any(not np.allclose(raw[k], ema[k]) for k in raw)
  # flags.txt is a usable --flagfile: a re-run with it is a no-op resume at step 6.
  proc = _train(train_dir, data, f"--flagfile={train_dir / 'flags.txt'}")
  assert "RESUMING" in proc.output
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-6")


def test_one_vs_two_replicas_take_the_same_step(data, tmp_path):
  extra = ["--max_number_of_steps=2", "--log_every_n_steps=1", "--dropout_rate=0", "--weight_decay=0.001",
           "--clip_gradient_norm=1.0"]
  _train(tmp_path / "r1", data, *extra)
  _train(tmp_path / "r2", data, *extra, "--num_cpu_replicas=2")
  one, two = _weights(str(tmp_path / "r1" / "ckpt-2")), _weights(str(tmp_path / "r2" / "ckpt-2"))
  for k in one:
    np.testing.assert_allclose(one[k], two[k], rtol=1e-4, atol=1e-5, err_msg=k)
  # The second step really moved the weights: the comparison is not between two unchanged states.
  before = _weights(str(tmp_path / "r1" / "ckpt-1"))
  assert any(not np.allclose(before[k], one[k], rtol=1e-4, atol=1e-5) for k in one)


def test_xla_step_matches_the_plain_step(data, tmp_path):
  extra = ["--max_number_of_steps=2", "--log_every_n_steps=1", "--dropout_rate=0", "--color_distortion=full"]
  _train(tmp_path / "plain", data, *extra)
  proc = _train(tmp_path / "xla", data, *extra, "--jit_compile", "--verbosity=1")  # verbose: TF's own log lines
  assert "--jit_compile" in (tmp_path / "xla" / "flags.txt").read_text().split()
  plain, xla = _weights(str(tmp_path / "plain" / "ckpt-2")), _weights(str(tmp_path / "xla" / "ckpt-2"))
  for k in plain:
    np.testing.assert_allclose(plain[k], xla[k], rtol=1e-4, atol=1e-5, err_msg=k)
  assert "Compiled cluster using XLA" in proc.stderr  # the step really went through XLA


def test_kill_and_restart_finishes_like_an_uninterrupted_run(data, tmp_path):
  extra = ["--max_number_of_steps=16", "--save_interval_steps=2", "--moving_average_decay=0.9"]
  _train(tmp_path / "straight", data, *extra)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(killed, data, *extra, "--steps_per_loop=1"), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    steps = [int(p.split("ckpt-")[1].split(".")[0]) for p in glob.glob(str(killed / "ckpt-*.index"))]
    if steps and max(steps) >= 6:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be killed; make it longer"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  stopped_at = int(tf.train.latest_checkpoint(str(killed)).split("-")[-1])
  assert 0 < stopped_at < 16  # the index of a newer one may exist before the state file names it
  restarted = _train(killed, data, *extra)
  assert f"RESUMING from {killed}" in restarted.output
  a, b = str(tmp_path / "straight" / "ckpt-16"), str(killed / "ckpt-16")
  for ema in (False, True):
    wa, wb = _weights(a, ema=ema), _weights(b, ema=ema)
    for k in wa:
      np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5, err_msg=f"{k} ema={ema}")
  # Optimizer state came back too: the momentum slots match.
  ra, rb = tf.train.load_checkpoint(a), tf.train.load_checkpoint(b)
  slots = [k for k in ra.get_variable_to_shape_map() if k.startswith("optimizer/_variables/")]
  assert slots
  for k in slots:
    np.testing.assert_allclose(ra.get_tensor(k), rb.get_tensor(k), rtol=1e-4, atol=1e-5, err_msg=k)


def test_fine_tune_excludes_head_and_trains_only_trainable_scopes(base_run, data4, tmp_path):
  src = _weights(str(base_run / "ckpt-6"))
  # 4 classes now: without excluding the head the shapes differ, and the error says which flag fixes it.
  proc = _train(tmp_path / "bad", data4, f"--checkpoint_path={base_run}", "--max_number_of_steps=2",
                expect_ok=False)
  assert proc.returncode != 0
  assert "--checkpoint_exclude_scopes=logits" in proc.stderr and "logits/kernel" in proc.stderr
  # A scope that matches nothing teaches what the scopes are.
  proc = _train(tmp_path / "bad2", data4, "--trainable_scopes=Logits", "--max_number_of_steps=2",
                expect_ok=False)
  assert proc.returncode != 0 and "matches no variable" in proc.stderr and "logits" in proc.stderr
  ft = tmp_path / "ft"
  proc = _train(ft, data4, f"--checkpoint_path={base_run}", "--checkpoint_exclude_scopes=logits",
                "--trainable_scopes=logits", "--max_number_of_steps=3")
  assert "FINE-TUNING" in proc.output
  after = _weights(str(ft / "ckpt-3"), num_classes=4)
  head = [k for k in after if k.startswith("logits")]
  assert head
  for k in after:
    if not k.startswith("logits"):
      np.testing.assert_array_equal(after[k], src[k], err_msg=f"{k} changed but is outside --trainable_scopes")
  # --checkpoint_path is ignored (loudly) once train_dir has its own checkpoint.
  proc = _train(ft, data4, f"--checkpoint_path={base_run}", "--checkpoint_exclude_scopes=logits",
                "--trainable_scopes=logits", "--max_number_of_steps=4")
  assert "RESUMING" in proc.output and "is ignored" in proc.output


def test_mixed_precision_runs(data, tmp_path):
  _train(tmp_path / "fp16", data, "--max_number_of_steps=2", "--precision=mixed_float16")
  assert tf.train.latest_checkpoint(str(tmp_path / "fp16")).endswith("ckpt-2")


def test_nan_loss_stops_with_error_and_keeps_last_good_checkpoint(data, tmp_path):
  train_dir = tmp_path / "nan"
  _train(train_dir, data, "--max_number_of_steps=2", "--optimizer=sgd")
  proc = _train(train_dir, data, "--max_number_of_steps=40", "--optimizer=sgd", "--learning_rate=1e30",
                "--learning_rate_decay_type=fixed", expect_ok=False)
  assert proc.returncode != 0
  assert "Loss became" in proc.stderr and "last good checkpoint" in proc.stderr
  latest = tf.train.latest_checkpoint(str(train_dir))
  weights = _weights(latest)
  assert all(np.isfinite(w).all() for w in weights.values())


def test_fine_tune_backbone_from_keras_applications_weight_file(data, tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  app_model = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=None, input_shape=(32, 32, 3))
  rng = np.random.RandomState(0)
  for v in app_model.weights:  # not the initializer's values, so a restore that did nothing would show
    if "moving_variance" in v.path:
      v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    else:
      v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
  weight_file = str(tmp_path / "mobilenet_2_5_notop.weights.h5")
  app_model.save_weights(weight_file)
  expected = {v.path: np.array(v.numpy()) for v in app_model.weights}
  ft = tmp_path / "ft"
  _train(ft, data, "--model_name=mobilenet_v1_025", f"--checkpoint_path={weight_file}",
         "--checkpoint_exclude_scopes=logits", "--trainable_scopes=logits", "--max_number_of_steps=1")
  after = _weights(str(ft / "ckpt-1"), model_name="mobilenet_v1_025")
  backbone = [k for k in after if not k.startswith("logits")]
  assert len(backbone) == len(expected)
  for k in backbone:
    np.testing.assert_array_equal(after[k], expected[k], err_msg=k)


def test_augmentations_mixup_cutmix_and_bfloat16_run(data, tmp_path):
  train_dir = tmp_path / "aug"
  _train(train_dir, data, "--max_number_of_steps=2", "--augment=randaugment", "--random_erasing=0.25",
         "--mixup_alpha=0.2", "--cutmix_alpha=1.0", "--label_smoothing=0.1", "--precision=mixed_bfloat16")
  info = json.loads((train_dir / "run_info.json").read_text())
  assert info["finished"] and info["hparams"]["augment"] == "randaugment" and info["precision"] == "mixed_bfloat16"
  assert all(np.isfinite(w).all() for w in _weights(str(train_dir / "ckpt-2")).values())
