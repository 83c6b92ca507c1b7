"""Past one machine: any TensorFlow filesystem (ram://, file:// URLs) and the tf.data service.

    .venv/bin/python -m pytest tests/test_cluster.py -q

Preemption (SIGTERM) is tested with the trainer (test_train.py) and with two workers
(test_multiworker.py).
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import tensorflow as tf

import datasets
from slimflowers.study import compare
from slimflowers.data import service as data_service
from slimflowers.eval import program as evaluate
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.eval import predictions
from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ram(name):
  """A fresh ram:// path (the in-memory filesystem's names are process-wide; never reuse one)."""
  return f"ram://{name}_{uuid.uuid4().hex[:8]}"


def test_the_whole_cycle_on_tensorflows_in_memory_filesystem(tmp_path):
  """convert -> train -> evaluate -> compare with every output on ram://: nothing may touch the local disk."""
  source = tiny_data.write_folder(str(tmp_path / "photos"), num_classes=3, per_class=8, size=32)
  before = sorted(os.listdir(tmp_path))
  data = _ram("data")
  meta = datasets.convert("folder", data, source=source, validation_size=0.25, num_workers=1)
  assert meta["splits"]["validation"]["num_samples"] == 6
  assert fileio.isfile(f"{data}/dataset.json") and fileio.isfile(f"{data}/labels.txt")
  assert not fileio.exists(f"{data}/.lock")  # released
  runs = _ram("runs")
  train_dir = f"{runs}/cifarnet"
  info = tiny_data.train(train_dir, data, max_number_of_steps=4, save_interval_steps=2)
  assert info["finished"] and run_dir.read_run_info(train_dir)["final_step"] == 4
  assert tf.train.latest_checkpoint(train_dir) == f"{train_dir}/ckpt-4"
  assert "--model_name=cifarnet" in fileio.read_text(f"{train_dir}/flags.txt")
  results = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=train_dir, dataset_name="folder",
                         dataset_dir=data, batch_size=4, continuous=True, eval_interval_secs=0.1,
                         eval_timeout_secs=30)
  assert [r["step"] for r in results] == [4] and results[0]["num_examples"] == 6
  val_dir = run_dir.eval_dir(train_dir, "validation")
  assert run_dir.evaluated_steps(val_dir) == {4}
  # The final step's predictions.csv, on ram:// too, named by its results row.
  assert predictions.checked_path(val_dir, results[0]) == f"{val_dir}/predictions.csv"
  assert len(predictions.read(f"{val_dir}/predictions.csv")["label"]) == 6
  at_chance = results[0]["sanity"]["at_chance"]  # (4 steps, 6 images: it usually is) then no best/
  if not at_chance:
    assert run_dir.read_best(val_dir)["step"] == 4
    assert tf.train.latest_checkpoint(run_dir.best_dir(val_dir)).endswith("ckpt-4")
  else:
    assert run_dir.read_best(val_dir) == {}
  report = compare.write_report([runs])
  assert report.output_dir == f"{runs}/report"
  (row,) = report.rows
  assert row["steps"] == 4 and row["final_val_accuracy"] == pytest.approx(results[0]["accuracy"])
  assert row["best_val_accuracy"] == (None if at_chance else pytest.approx(results[0]["accuracy"]))
  assert (row["status"] == "NOT LEARNING: at chance") == at_chance
  for name in run_dir.REPORT_FILES:
    assert fileio.size(f"{runs}/report/{name}") > 0, name
  assert sorted(os.listdir(tmp_path)) == before  # all of it stayed in memory


def test_fileio_on_ram_writes_atomically_and_appends():
  root = _ram("io")
  fileio.write_json_atomic(f"{root}/a/run_info.json", {"step": 1})
  fileio.write_json_atomic(f"{root}/a/run_info.json", {"step": 2})
  assert fileio.read_json(f"{root}/a/run_info.json") == {"step": 2}
  for step in (1, 2):
    fileio.append_line(f"{root}/a/results.jsonl", json.dumps({"step": step}))
  assert fileio.read_jsonl(f"{root}/a/results.jsonl") == [{"step": 1}, {"step": 2}]
  assert fileio.listdir(f"{root}/a") == ["results.jsonl", "run_info.json"]  # no temporary left behind


@pytest.mark.slow
def test_the_scripts_take_file_urls(tmp_path):
  """convert, train, evaluate and compare with every path given as a file:// URL."""
  source = tiny_data.write_folder(str(tmp_path / "photos"), num_classes=3, per_class=8, size=32)
  data, runs = f"file://{tmp_path}/data", f"file://{tmp_path}/runs"

  def script(name, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, name), *args], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, f"{name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc

  script("download_and_convert_data.py", "--dataset_name=folder", f"--source=file://{source}",
         f"--dataset_dir={data}", "--validation_size=0.25", "--num_workers=1")
  assert (tmp_path / "data" / "dataset.json").is_file()
  script("train_image_classifier.py", f"--train_dir={runs}/cifarnet", f"--dataset_dir={data}",
         *[f"--{k}={v}" for k, v in tiny_data.TRAIN_DEFAULTS.items()], "--max_number_of_steps=2")
  assert json.loads((tmp_path / "runs" / "cifarnet" / "run_info.json").read_text())["final_step"] == 2
  script("eval_image_classifier.py", f"--checkpoint_path={runs}/cifarnet", "--dataset_name=folder",
         f"--dataset_dir={data}", "--batch_size=4")
  assert run_dir.evaluated_steps(str(tmp_path / "runs" / "cifarnet" / "eval_validation")) == {2}
  proc = subprocess.run([sys.executable, "-m", "slimflowers.compare", runs], capture_output=True, text=True,
                        cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| cifarnet" in proc.stdout and (tmp_path / "runs" / "report" / "results.csv").is_file()


def test_training_through_the_tf_data_service_uses_its_workers(tiny_dataset, tmp_path):
  """A dispatcher and two workers (in this process): a few steps train, and the workers ran the job."""
  address, dispatcher, workers = data_service.start(port=0, num_workers=2)
  try:
    info = tiny_data.train(tmp_path / "run", tiny_dataset, max_number_of_steps=4, tf_data_service=address)
    assert info["finished"] and info["final_step"] == 4
    weights = tiny_data.checkpoint_weights(str(tmp_path / "run" / "ckpt-4"))
    assert all(np.isfinite(w).all() for w in weights.values())
    assert dispatcher._num_workers() == 2  # pylint: disable=protected-access
    assert sum(w._num_tasks() for w in workers) >= 1  # pylint: disable=protected-access  (the job ran on them)
  finally:
    import gc  # pylint: disable=g-import-not-at-top
    gc.collect()  # the trainer's iterator first, then the servers: no client left heartbeating a stopped dispatcher
    for worker in workers:
      worker.stop()
    dispatcher.stop()


@pytest.mark.slow
def test_data_service_helper_runs_a_dispatcher_and_workers_until_stopped(tiny_dataset, tmp_path):
  """`python -m slimflowers.data_service --port=P --workers=2`, and a trainer in another process using it."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  log = tmp_path / "service.log"
  with open(log, "w") as out:
    service = subprocess.Popen([sys.executable, "-m", "slimflowers.data_service", f"--port={port}", "--workers=2",
                                "--expose_to_network"],
                               cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 120
    while "tf.data service: dispatcher" not in log.read_text() and time.time() < deadline:
      assert service.poll() is None, log.read_text()
      time.sleep(0.2)
    assert f"grpc://localhost:{port}" in log.read_text()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train_image_classifier.py"),
                           f"--train_dir={tmp_path / 'run'}", f"--dataset_dir={tiny_dataset}",
                           *[f"--{k}={v}" for k, v in tiny_data.TRAIN_DEFAULTS.items()], "--max_number_of_steps=3",
                           f"--tf_data_service=grpc://localhost:{port}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "tf.data service" in proc.stdout and "not bit-reproducible" in proc.stdout
  finally:
    service.send_signal(signal.SIGTERM)
    code = service.wait(timeout=60)
  assert code == 0 and "tf.data service stopped" in log.read_text()
