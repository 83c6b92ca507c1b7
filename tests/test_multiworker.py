"""train_image_classifier.py under MultiWorkerMirroredStrategy: two worker processes on localhost.

Each worker gets its own TF_CONFIG (worker 0 is the chief) and the SAME --train_dir,
as on a shared filesystem. The chief alone may write checkpoints, summaries, flags.txt
and run_info.json there; the other worker still saves (MultiWorkerMirroredStrategy's
collectives need every worker to take part) but into a temporary directory.

Two workers x 1 replica must take exactly the steps of 1 process x 2 logical CPU
replicas with the same global batch: the input pipeline gives pipeline p the elements
i with i % num_pipelines == p, so worker p's batch k holds global elements
{8k + p, 8k + p + 2, ...} while the single process's two replicas get {8k .. 8k+3} and
{8k+4 .. 8k+7}. The global batches are the same sets, the loss is a sum over the global
batch, and cifarnet has no batch statistics, so the summed gradients agree up to
float summation order.

A second test resumes the two workers from the chief's checkpoint (both must restore the
same step from the shared train_dir) and checks they end where an uninterrupted run does.

    .venv/bin/python -m pytest tests/test_multiworker.py -q   # ~60 s on a busy 2-core machine
"""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_image_classifier.py")
STEPS = 4
FLAGS = ["--model_name=cifarnet", "--train_image_size=32", "--batch_size=8", "--log_every_n_steps=2",
         "--dropout_rate=0", "--save_interval_secs=0", "--optimizer=momentum", "--learning_rate=0.05",
         "--dataset_name=folder"]
TIMEOUT_SECS = 240  # far above the ~30 s a run takes on a busy 2-core machine; a deadlock fails, not hangs


def _free_ports(n):
  """n distinct free localhost ports (all sockets held open until every port is chosen)."""
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("localhost", 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _start(train_dir, dataset_dir, log_path, *extra, env=None):
  cmd = [sys.executable, SCRIPT, f"--train_dir={train_dir}", f"--dataset_dir={dataset_dir}", *FLAGS, *extra]
  # Logs go to files, not pipes: a full pipe would block a worker and, through the collectives, both.
  # Verbose: the test reads Orbit's own "saved checkpoint to" lines, which a quiet console drops.
  env = dict(env if env is not None else os.environ, SLIMFLOWERS_VERBOSE="1")
  with open(log_path, "w") as log:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_all(procs, logs, timeout):
  """Waits for every process; on timeout kills them all and fails with their log tails."""
  deadline = time.time() + timeout
  try:
    for proc in procs:
      proc.wait(timeout=max(deadline - time.time(), 0.1))
  except subprocess.TimeoutExpired:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
    for proc in procs:
      proc.wait()
    tails = "\n".join(f"--- {log} ---\n{_read(log)[-3000:]}" for log in logs)
    raise AssertionError(f"trainers still running after {timeout} s (deadlock?); killed.\n{tails}")
  finally:
    for proc in procs:  # never leave a worker behind, whatever failed above
      if proc.poll() is None:
        proc.kill()
        proc.wait()


def _read(path):
  with open(path) as f:
    return f.read()


_weights = tiny_data.checkpoint_weights
_scalar_steps = tiny_data.summary_steps


def _saved_checkpoints(log_text):
  """The checkpoint prefixes Orbit's Controller says it saved."""
  return re.findall(r"saved checkpoint to (\S+?)\.?$", log_text, flags=re.M)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return tiny_data.make_dataset(tmp_path_factory.mktemp("data"), num_classes=3, per_class=12)


def _train_two_workers(train_dir, dataset_dir, log_dir, steps, reference_dir=None):
  """Trains worker 0 and worker 1 to `steps` (beside them, if asked, a 2-replica single process to 2 * STEPS).

  Returns (procs, log texts); each worker has its own TMPDIR under log_dir, so the
  non-chief's temporary checkpoint dir stays in the test's tmp dir.
  """
  ports = _free_ports(2)
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  procs, logs = [], []
  for index in range(2):
    worker_tmp = log_dir / f"tmp_worker{index}"
    worker_tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(worker_tmp),
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    logs.append(log_dir / f"worker{index}.log")
    procs.append(_start(train_dir, dataset_dir, logs[-1], f"--max_number_of_steps={steps}", "--save_interval_steps=2",
                        env=env))
  if reference_dir is not None:  # independent of the workers: run beside them to save wall time
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    logs.append(log_dir / "single.log")
    # Checkpoints every 2 steps (the same loops of 2 steps): ckpt-STEPS and ckpt-2*STEPS to compare with.
    procs.append(_start(reference_dir, dataset_dir, logs[-1], "--num_cpu_replicas=2",
                        f"--max_number_of_steps={2 * STEPS}", "--save_interval_steps=2", env=env))
  _wait_all(procs, logs, TIMEOUT_SECS)
  texts = [_read(log) for log in logs]
  for name, proc, text in zip(("worker 0", "worker 1", "single process"), procs, texts):
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{text[-4000:]}"
  return procs, texts


@pytest.fixture(scope="module")
def two_worker_run(data, tmp_path_factory):
  """2 workers to step STEPS in a shared train_dir; a 1-process 2-replica reference to step 2 * STEPS."""
  root = tmp_path_factory.mktemp("multiworker")
  procs, texts = _train_two_workers(root / "shared_train_dir", data, root, STEPS, reference_dir=root / "single")
  return types.SimpleNamespace(root=root, train_dir=root / "shared_train_dir", reference=root / "single",
                               procs=procs, texts=texts)


def _assert_same_weights(a, b):
  wa, wb = _weights(str(a)), _weights(str(b))
  for k in wa:
    np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-4, err_msg=f"{k}: {a} vs {b}")


@pytest.mark.slow
def test_two_workers_train_like_two_replicas_and_only_the_chief_writes(two_worker_run):
  run = two_worker_run
  train_dir, (chief, worker) = run.train_dir, run.procs[:2]
  chief_log, worker_log = run.texts[:2]
  assert "MultiWorkerMirroredStrategy: 2 replicas in sync" in chief_log, chief_log[-3000:]

  # The chief wrote the run's outputs into the shared train_dir.
  assert tf.train.latest_checkpoint(str(train_dir)) == str(train_dir / f"ckpt-{STEPS}")
  info = json.loads((train_dir / "run_info.json").read_text())
  assert info["finished"] and info["final_step"] == STEPS and info["num_replicas"] == 2, info
  assert "--model_name=cifarnet" in (train_dir / "flags.txt").read_text()
  tags = _scalar_steps(str(train_dir / "train"))
  for tag in ("total_loss", "accuracy", "learning_rate", "input_images"):
    assert tag in tags, f"summary {tag} missing; have {sorted(tags)}"
  assert max(tags["total_loss"]) == STEPS

  # ... and only the chief: the non-chief saved every checkpoint elsewhere, ...
  chief_saves, worker_saves = _saved_checkpoints(chief_log), _saved_checkpoints(worker_log)
  assert str(train_dir / f"ckpt-{STEPS}") in chief_saves, chief_saves
  assert worker_saves and worker_saves[-1].endswith(f"ckpt-{STEPS}"), worker_log[-3000:]
  assert not [p for p in worker_saves if os.path.dirname(p) == str(train_dir)], worker_saves
  # ... train_dir's checkpoint state lists only train_dir's own checkpoints, ...
  state = tf.train.get_checkpoint_state(str(train_dir))
  assert all(os.path.dirname(p) == str(train_dir) for p in state.all_model_checkpoint_paths), state
  # ... and every event file there was written by the chief's process (its pid is in the name).
  events = glob.glob(str(train_dir / "**" / "events.out.tfevents.*"), recursive=True)
  assert events
  pids = {int(os.path.basename(p).split(".")[-3]) for p in events}  # ...tfevents.TIME.HOST.PID.N.v2
  assert pids == {chief.pid}, (pids, chief.pid, worker.pid, events)

  # 2 workers x 1 replica took the same steps as 1 process x 2 replicas, same global batch.
  _assert_same_weights(train_dir / f"ckpt-{STEPS}", run.reference / f"ckpt-{STEPS}")
  # The comparison is between trained states: the later steps moved the weights.
  earlier, final = _weights(str(train_dir / f"ckpt-{STEPS // 2}")), _weights(str(train_dir / f"ckpt-{STEPS}"))
  assert any(not np.allclose(earlier[k], final[k], rtol=1e-4, atol=1e-4) for k in final)


@pytest.mark.slow
def test_two_workers_resume_from_the_chiefs_checkpoint(two_worker_run, data, tmp_path):
  train_dir = tmp_path / "resumed"
  shutil.copytree(two_worker_run.train_dir, train_dir)  # the other test reads the original
  _, (chief_log, worker_log) = _train_two_workers(train_dir, data, tmp_path, 2 * STEPS)
  for text in (chief_log, worker_log):
    assert f"RESUMING from {train_dir / f'ckpt-{STEPS}'} (step {STEPS})" in text, text[-3000:]
  # Resumed at STEPS, the two workers end where an uninterrupted 2-replica run ends.
  _assert_same_weights(train_dir / f"ckpt-{2 * STEPS}", two_worker_run.reference / f"ckpt-{2 * STEPS}")


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_at_the_same_step_and_they_resume_exactly(data, tmp_path):
  """TensorFlow's PreemptionCheckpointHandler: the workers agree on the step, save, exit 42, resume exactly."""
  import random  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  from tests import tiny_data as td  # pylint: disable=g-import-not-at-top
  steps = 24
  reference = tmp_path / "reference"  # one process, two replicas, uninterrupted (this process's logical CPUs)
  td.train(reference, data, num_cpu_replicas=2, max_number_of_steps=steps, dropout_rate=0.0, log_every_n_steps=1)
  train_dir = tmp_path / "shared"
  ports = _free_ports(2)
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  procs, logs = [], []
  for index in range(2):
    worker_tmp = tmp_path / f"tmp_worker{index}"
    worker_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(worker_tmp),
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    logs.append(tmp_path / f"worker{index}.log")
    procs.append(_start(train_dir, data, logs[-1], f"--max_number_of_steps={steps}", "--log_every_n_steps=1",
                        env=env))
  rng = random.Random(7)
  try:
    deadline = time.time() + TIMEOUT_SECS
    target = rng.randint(3, steps - 10)
    while time.time() < deadline:
      found = [int(m) for m in re.findall(r"step (\d+)/", _read(logs[0]))]
      if found and max(found) >= target or any(p.poll() is not None for p in procs):
        break
      time.sleep(0.05)
    victim = procs[rng.randint(0, 1)]
    victim.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=TIMEOUT_SECS) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  texts = [_read(log) for log in logs]
  assert codes == [42, 42], (codes, texts[0][-3000:], texts[1][-3000:])
  stops = [int(re.search(r"SIGTERM at step (\d+); every worker saved", t).group(1)) for t in texts]
  assert stops[0] == stops[1] < steps, stops
  assert tf.train.latest_checkpoint(str(train_dir)) == str(train_dir / f"ckpt-{stops[0]}")
  # Restarted with the same command, both resume at that step and end where the uninterrupted run ends.
  _, (chief_log, worker_log) = _train_two_workers(train_dir, data, tmp_path, steps)
  for text in (chief_log, worker_log):
    assert f"RESUMING from {train_dir / f'ckpt-{stops[0]}'} (step {stops[0]})" in text, text[-3000:]
  _assert_same_weights(train_dir / f"ckpt-{steps}", reference / f"ckpt-{steps}")


@pytest.mark.slow
def test_a_stop_request_stops_both_workers_at_the_same_step(data, tmp_path):
  """Early stopping (slimflowers/train/early_stopping.py): the chief reads the request, an all-reduce tells the
  other."""
  train_dir = tmp_path / "shared"
  ports = _free_ports(2)
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  procs, logs = [], []
  for index in range(2):
    worker_tmp = tmp_path / f"tmp_worker{index}"
    worker_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(worker_tmp),
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    logs.append(tmp_path / f"worker{index}.log")
    procs.append(_start(train_dir, data, logs[-1], "--max_number_of_steps=1000000", "--log_every_n_steps=1",
                        env=env))
  try:
    deadline = time.time() + TIMEOUT_SECS
    while time.time() < deadline and all(p.poll() is None for p in procs):
      found = [int(m) for m in re.findall(r"step (\d+)/", _read(logs[0]))]
      if found and max(found) >= 3:
        break
      time.sleep(0.05)
    (train_dir / "stop_request.json").write_text(json.dumps({"reason": "the test asks"}))
    codes = [p.wait(timeout=TIMEOUT_SECS) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  texts = [_read(log) for log in logs]
  assert codes == [0, 0], (codes, texts[0][-3000:], texts[1][-3000:])
  stops = [int(re.search(r"at step (\d+); stopping early", t).group(1)) for t in texts]
  assert stops[0] == stops[1] >= 3, stops
  info = json.loads((train_dir / "run_info.json").read_text())
  assert (info["stopped_early"], info["final_step"], info["stop_reason"]) == (True, stops[0], "the test asks")
  assert tf.train.latest_checkpoint(str(train_dir)) == str(train_dir / f"ckpt-{stops[0]}")
