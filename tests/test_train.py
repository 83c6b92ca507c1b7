"""The trainer: the real script end to end (flags, resume, kill) and the training program in-process.

Runs that test a process (the script's flags and output, a kill, XLA's own log line) are
subprocesses; the rest call slimflowers.train.run in this process (tests/tiny_data.train),
with conftest.py's two logical CPUs for the multi-replica runs: the same code, minus ten
seconds of TensorFlow start-up per run.
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

from slimflowers.core import errors
from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_image_classifier.py")
BASE = [f"--{k}={v}" for k, v in tiny_data.TRAIN_DEFAULTS.items()]


@pytest.fixture(scope="module")
def data(tiny_dataset):
  return tiny_dataset


@pytest.fixture(scope="module")
def data4(tmp_path_factory):
  return tiny_data.make_dataset(tmp_path_factory.mktemp("data4"), num_classes=4, per_class=6)


def _cmd(train_dir, dataset_dir, *extra):
  return [sys.executable, SCRIPT, f"--train_dir={train_dir}", f"--dataset_dir={dataset_dir}", *BASE, *extra]


def _script(train_dir, dataset_dir, *extra, expect_ok=True):
  """The real train_image_classifier.py in a subprocess."""
  proc = subprocess.run(_cmd(train_dir, dataset_dir, *extra), capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
  if expect_ok and proc.returncode != 0:
    raise AssertionError(f"trainer failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  proc.output = proc.stdout + proc.stderr  # the project's lines go to stdout, other libraries' to stderr
  return proc


_train = tiny_data.train
_weights = tiny_data.checkpoint_weights
_scalar_tags = tiny_data.summary_steps


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
  train_dir = tmp_path_factory.mktemp("base")
  _script(train_dir, data, "--max_number_of_steps=6", "--moving_average_decay=0.9")
  return train_dir


def test_end_to_end_writes_checkpoints_flags_and_summaries(base_run, data):
  train_dir = base_run
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-6")
  flags_txt = (train_dir / "flags.txt").read_text()
  assert "--model_name=cifarnet" in flags_txt and "--preprocessing_name=cifarnet" in flags_txt
  assert "--random_flip" in flags_txt.split()  # every flag is written, also the augmentation switches
  info = json.loads((train_dir / "run_info.json").read_text())
  assert info["finished"] and info["final_step"] == 6 and info["num_classes"] == 3
  assert info["class_names"] == ["class_0", "class_1", "class_2"]
  assert info["trainable_params"] > 0 and info["images_per_sec"] > 0
  tags = _scalar_tags(train_dir / "train")
  for tag in ("total_loss", "cross_entropy", "regularization_loss", "learning_rate", "accuracy",
              "gradient_norm", "images_per_sec", "steps_per_hour", "sec_per_step", "input_images"):
    assert tag in tags, f"summary {tag} missing; have {sorted(tags)}"
  assert max(tags["total_loss"]) == 6
  # EMA weights are saved and differ from the raw weights.
  raw, ema = _weights(str(train_dir / "ckpt-6")), _weights(str(train_dir / "ckpt-6"), ema=True)
  assert any(not np.allclose(raw[k], ema[k]) for k in raw)
  assert not (train_dir / ".lock").exists()  # the lock is released at exit
  # flags.txt is a usable --flagfile: a re-run with it trains nothing and writes nothing.
  before = _files(train_dir)
  proc = _script(train_dir, data, f"--flagfile={train_dir / 'flags.txt'}")
  assert "already finished at step 6 with these flags: nothing to do" in proc.output
  assert "Traceback" not in proc.output and "cuInit" not in proc.output  # a quiet console
  assert _files(train_dir) == before


def _files(directory):
  """{relative path: bytes} of every file below `directory`."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def test_a_rerun_with_other_training_flags_is_refused_and_changes_no_file(base_run, data):
  before = _files(base_run)
  proc = _script(base_run, data, f"--flagfile={base_run / 'flags.txt'}", "--learning_rate=0.01", "--optimizer=adam",
                 "--log_every_n_steps=5", expect_ok=False)
  assert proc.returncode == 2 and "Traceback" not in proc.output
  (line,) = proc.stderr.strip().splitlines()
  assert line.startswith("train_image_classifier.py: error: ") and "was trained with other flags" in line
  assert "--learning_rate=0.01 (the run: --learning_rate=0.05)" in line
  assert "--optimizer=adam (the run: --optimizer=momentum)" in line
  assert "log_every_n_steps" not in line  # logging does not change the training: not a difference
  assert "use a new --train_dir" in line and "--max_number_of_steps above 6" in line
  assert _files(base_run) == before


def test_checkpoints_fall_on_multiples_of_the_save_interval(data, tmp_path):
  """Loops of 3 steps, a checkpoint every 4: at 4 and 8 (and the final 10), not at 3 and 9 (issue 20)."""
  _train(tmp_path / "r", data, max_number_of_steps=10, save_interval_steps=4, log_every_n_steps=3)
  steps = sorted(int(p.split("ckpt-")[1].split(".")[0]) for p in glob.glob(str(tmp_path / "r" / "ckpt-*.index")))
  assert steps == [4, 8, 10]


def test_one_vs_two_replicas_take_the_same_step(data, tmp_path):
  extra = dict(max_number_of_steps=2, log_every_n_steps=1, save_interval_steps=1, dropout_rate=0.0,
               weight_decay=0.001, clip_gradient_norm=1.0)
  _train(tmp_path / "r1", data, **extra)
  info = _train(tmp_path / "r2", data, num_cpu_replicas=2, **extra)
  assert info["num_replicas"] == 2
  one, two = _weights(str(tmp_path / "r1" / "ckpt-2")), _weights(str(tmp_path / "r2" / "ckpt-2"))
  for k in one:
    np.testing.assert_allclose(one[k], two[k], rtol=1e-4, atol=1e-5, err_msg=k)
  # The second step really moved the weights: the comparison is not between two unchanged states.
  before = _weights(str(tmp_path / "r1" / "ckpt-1"))
  assert any(not np.allclose(before[k], one[k], rtol=1e-4, atol=1e-5) for k in one)


@pytest.mark.slow  # a subprocess of its own (the property is about a process)
def test_xla_step_matches_the_plain_step(data, tmp_path):
  extra = ["--max_number_of_steps=2", "--log_every_n_steps=1", "--dropout_rate=0", "--color_distortion=full",
           "--preprocessing_name=inception"]
  _train(tmp_path / "plain", data, max_number_of_steps=2, log_every_n_steps=1, dropout_rate=0.0,
         color_distortion="full", preprocessing_name="inception")
  # A subprocess: XLA logs "Compiled cluster" once per process, and only verbose (--verbosity=1).
  proc = _script(tmp_path / "xla", data, *extra, "--jit_compile", "--verbosity=1")
  assert "--jit_compile" in (tmp_path / "xla" / "flags.txt").read_text().split()
  plain, xla = _weights(str(tmp_path / "plain" / "ckpt-2")), _weights(str(tmp_path / "xla" / "ckpt-2"))
  for k in plain:
    np.testing.assert_allclose(plain[k], xla[k], rtol=1e-4, atol=1e-5, err_msg=k)
  assert "Compiled cluster using XLA" in proc.stderr  # the step really went through XLA


@pytest.mark.slow  # a subprocess of its own (the property is about a process)
def test_kill_and_restart_finishes_like_an_uninterrupted_run(data, tmp_path):
  extra = dict(max_number_of_steps=16, save_interval_steps=2, moving_average_decay=0.9)
  _train(tmp_path / "straight", data, **extra)
  killed = tmp_path / "killed"
  argv = [f"--{k}={v}" for k, v in extra.items()]
  proc = subprocess.Popen(_cmd(killed, data, *argv, "--steps_per_loop=1"), cwd=ROOT,
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
  assert (killed / ".lock").exists()  # a killed trainer leaves its lock; the restart takes it over
  restarted = _script(killed, data, *argv)
  assert f"RESUMING from {killed}" in restarted.output
  assert "--checkpoint_path" not in restarted.output  # not given: not said to be ignored
  assert "Taking over the stale lock" in restarted.output
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


def test_fine_tune_excludes_head_and_trains_only_trainable_scopes(base_run, data4, tmp_path, caplog):
  src = _weights(str(base_run / "ckpt-6"))
  # 4 classes now: without excluding the head the shapes differ, and the error says which flag fixes it.
  with pytest.raises(errors.BadValue) as e:
    _train(tmp_path / "bad", data4, checkpoint_path=str(base_run), max_number_of_steps=2)
  assert "--checkpoint_exclude_scopes=logits" in str(e.value) and "logits/kernel" in str(e.value)
  # A scope that matches nothing teaches what the scopes are.
  with pytest.raises(errors.BadValue, match="matches no variable.*logits"):
    _train(tmp_path / "bad2", data4, trainable_scopes=["Logits"], max_number_of_steps=2)
  ft = tmp_path / "ft"
  _train(ft, data4, checkpoint_path=str(base_run), checkpoint_exclude_scopes=["logits"],
         trainable_scopes=["logits"], max_number_of_steps=3)
  assert "FINE-TUNING" in caplog.text
  after = _weights(str(ft / "ckpt-3"), num_classes=4)
  head = [k for k in after if k.startswith("logits")]
  assert head
  for k in after:
    if not k.startswith("logits"):
      np.testing.assert_array_equal(after[k], src[k], err_msg=f"{k} changed but is outside --trainable_scopes")
  # --checkpoint_path is ignored (loudly) once train_dir has its own checkpoint.
  caplog.clear()
  _train(ft, data4, checkpoint_path=str(base_run), checkpoint_exclude_scopes=["logits"],
         trainable_scopes=["logits"], max_number_of_steps=4)
  assert "RESUMING" in caplog.text and f"a checkpoint in train_dir wins over --checkpoint_path={base_run}" in caplog.text


def test_mixed_precision_runs_in_float16_with_loss_scaling(data, tmp_path):
  train_dir = tmp_path / "fp16"
  info = _train(train_dir, data, max_number_of_steps=2, precision="mixed_float16")
  assert info["precision"] == "mixed_float16"
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-2")
  dtypes = tf.train.load_checkpoint(str(train_dir / "ckpt-2")).get_variable_to_dtype_map()
  # Variables stay float32 (Keras' mixed policy: float16 compute, float32 weights) ...
  floats = {k: v for k, v in dtypes.items() if v.is_floating}
  assert floats and all(v == tf.float32 for v in floats.values()), floats
  # ... and the optimizer is a LossScaleOptimizer: its dynamic loss scale and inner optimizer are saved.
  assert "optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE" in dtypes, sorted(dtypes)
  assert any(k.startswith("optimizer/inner_optimizer/") for k in dtypes)
  # The compute dtype really was float16: a model under that policy computes in float16.
  import keras  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = nets.get_model("cifarnet", 3)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.get_layer("conv1").kernel.dtype == "float32"
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert keras.mixed_precision.global_policy().name == "float32"  # the run did not leak its policy


def test_nan_loss_stops_with_error_and_keeps_last_good_checkpoint(data, tmp_path):
  train_dir = tmp_path / "nan"
  # Two good steps (a checkpoint at step 2), then the learning rate grows by 1e15 (the staircase: every 2 steps).
  with pytest.raises(errors.TrainingStopped, match="Loss became.*last good checkpoint"):
    _train(train_dir, data, max_number_of_steps=40, optimizer="sgd", learning_rate_decay_factor=1e15,
           num_epochs_per_decay=0.6, save_interval_steps=2)
  latest = tf.train.latest_checkpoint(str(train_dir))
  assert latest.endswith("ckpt-2")
  weights = _weights(latest)
  assert all(np.isfinite(w).all() for w in weights.values())
  assert not (train_dir / ".lock").exists()  # released on the error path too


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
  _train(ft, data, model_name="mobilenet_v1_025", checkpoint_path=weight_file, checkpoint_exclude_scopes=["logits"],
         trainable_scopes=["logits"], max_number_of_steps=1)
  after = _weights(str(ft / "ckpt-1"), model_name="mobilenet_v1_025")
  backbone = [k for k in after if not k.startswith("logits")]
  assert len(backbone) == len(expected)
  for k in backbone:
    np.testing.assert_array_equal(after[k], expected[k], err_msg=k)


@pytest.mark.slow  # ~13 s, nearly all of it tracing RandAugment's graph; make test runs it
def test_augmentations_mixup_cutmix_and_bfloat16_run(data, tmp_path):
  train_dir = tmp_path / "aug"
  _train(train_dir, data, max_number_of_steps=2, augment="randaugment", random_erasing=0.25, mixup_alpha=0.2,
         cutmix_alpha=1.0, label_smoothing=0.1, precision="mixed_bfloat16")
  info = json.loads((train_dir / "run_info.json").read_text())
  assert info["finished"] and info["hparams"]["augment"] == "randaugment" and info["precision"] == "mixed_bfloat16"
  assert all(np.isfinite(w).all() for w in _weights(str(train_dir / "ckpt-2")).values())


def _wait_for_step(log_path, step, proc, timeout=240):
  """Waits until the trainer's log shows `step N/` with N >= step; returns N."""
  import re  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    found = [int(m) for m in re.findall(r"step (\d+)/", log_path.read_text())]
    if found and max(found) >= step:
      return max(found)
    time.sleep(0.05)
  raise AssertionError(f"no step {step} in {log_path} (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}")


@pytest.mark.slow  # subprocesses: the property is about a process and its signals
@pytest.mark.parametrize("signum,seed", [(signal.SIGTERM, 1), (signal.SIGINT, 2)])
def test_sigterm_saves_the_current_step_and_a_restart_loses_nothing(data, tmp_path, signum, seed):
  """A scheduler's SIGTERM (or Ctrl-C) at a random step: checkpoint at that step, exit 42, exact resume."""
  import random  # pylint: disable=g-import-not-at-top
  steps = 30
  extra = dict(max_number_of_steps=steps, steps_per_loop=1, log_every_n_steps=1, moving_average_decay=0.9)
  _train(tmp_path / "straight", data, **extra)
  stopped = tmp_path / "stopped"
  argv = [f"--{k}={v}" for k, v in extra.items()]
  log = tmp_path / "stopped.log"
  with open(log, "w") as out:
    proc = subprocess.Popen(_cmd(stopped, data, *argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
  try:
    _wait_for_step(log, random.Random(seed).randint(3, steps - 8), proc)
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 42, log.read_text()[-3000:]
  finally:
    if proc.poll() is None:
      proc.kill()
  text = log.read_text()
  import re  # pylint: disable=g-import-not-at-top
  saved_at = int(re.search(r"at step (\d+); saved ", text).group(1))
  last_logged = max(int(s) for s in re.findall(r"step (\d+)/", text))
  assert saved_at == last_logged < steps  # no step was lost: the checkpoint holds every step trained
  assert tf.train.latest_checkpoint(str(stopped)).endswith(f"ckpt-{saved_at}")
  assert "Traceback" not in text and f"{signal.Signals(signum).name} at step {saved_at}" in text
  info = json.loads((stopped / "run_info.json").read_text())
  assert not info["finished"] and info["timed_steps"] > 0  # the time spent so far is kept for the totals
  restarted = _script(stopped, data, *argv)
  assert f"RESUMING from {stopped / f'ckpt-{saved_at}'}" in restarted.output
  a, b = str(tmp_path / "straight" / f"ckpt-{steps}"), str(stopped / f"ckpt-{steps}")
  for ema in (False, True):
    wa, wb = _weights(a, ema=ema), _weights(b, ema=ema)
    for k in wa:
      np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5, err_msg=f"{k} ema={ema}")


@pytest.mark.parametrize("overrides,message", [
    (dict(num_epochs=-1.0), "--num_epochs=-1.0 must be > 0"),
    (dict(max_number_of_steps=-5), "--max_number_of_steps=-5 must be >= 1"),
    (dict(model_name="resnet5"), "Unknown net 'resnet5'"),
    (dict(crop_area_range=["0.5"]), "--crop_area_range=0.5: give MIN,MAX"),
    (dict(crop_area_range=["0.5", "0.2"]), "--crop_area_range=0.5,0.2: use MIN,MAX"),
    (dict(decoded_cache_mb=-1), "--decoded_cache_mb=-1 must be >= 0"),
    (dict(max_number_of_steps=None, num_epochs=None), "Set --max_number_of_steps or --num_epochs"),
])
def test_bad_flags_are_one_line_user_errors(tmp_path, overrides, message):
  """The checks behind the script's exit-2 errors (test_safety.py runs some through the script)."""
  from slimflowers.train import program as train_lib  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags
  flags_ = dict(tiny_data.TRAIN_DEFAULTS, train_dir=str(tmp_path / "run"), dataset_dir=str(tmp_path / "data"),
                max_number_of_steps=2)
  flags_.update(overrides)
  with pytest.raises(errors.UserError) as e:
    train_lib.resolve_config(train_flags.config(**flags_))
  assert message in str(e.value) and "\n" not in str(e.value).strip()
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(errors.BadValue, match="is a file, not a directory"):
    train_lib.resolve_config(train_flags.config(**dict(flags_, **overrides, train_dir=str(tmp_path / "a_file"))))
