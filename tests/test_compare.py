"""slimflowers.compare on hand-made runs with known values gives the exact table."""
import csv
import json
import os
import subprocess
import sys

import pytest
from scipy import stats as scipy_stats
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2

from slimflowers.study import compare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_tf2_scalars(directory, series):
  """series: {tag: [(step, value)]} written with a TF2 summary writer (tensor events)."""
  writer = tf.summary.create_file_writer(directory)
  with writer.as_default():
    for tag, points in series.items():
      for step, value in points:
        tf.summary.scalar(tag, value, step=step)
  writer.close()


def _write_legacy_scalars(directory, points):
  """points: [(wall_time, step, tag, value)] as TF1-style simple_value events with chosen wall times."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "events.out.tfevents.1000.legacy")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(event_pb2.Event(wall_time=1000.0, file_version="brain.Event:2").SerializeToString())
    for wall_time, step, tag, value in points:
      summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
      writer.write(event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString())


def _write_jsonl(path, rows, torn_tail=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    if torn_tail:
      f.write(torn_tail)


def _eval_row(step, accuracy, split="validation", top5=1.0, mpc=None):
  return {"step": step, "checkpoint": f"ckpt-{step}", "split": split, "num_examples": 32, "accuracy": accuracy,
          "top_5_accuracy": top5, "loss": 1.0, "mean_per_class_accuracy": accuracy if mpc is None else mpc}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  # A complete study run: run_info.json, TF2 train summaries, validation and test results.
  a = str(root / "cifarnet")
  os.makedirs(a)
  with open(os.path.join(a, "run_info.json"), "w") as f:
    json.dump({"model_name": "cifarnet", "dataset_name": "synthetic_flowers", "image_size": 64, "batch_size": 32,
               "num_replicas": 1, "precision": "float32", "trainable_params": 1756426, "gflops": 0.0123,
               "hparams": {"optimizer": "rmsprop"}, "max_steps": 300, "final_step": 300, "finished": True,
               "train_wall_secs": 3723.4, "images_per_sec": 512.25, "sec_per_step": 0.0625,
               "steps_per_hour": 57600.0}, f)
  _write_tf2_scalars(os.path.join(a, "train"), {"total_loss": [(0, 2.0), (150, 1.0), (300, 0.5)],
                                                "images_per_sec": [(150, 1.0)]})
  _write_jsonl(os.path.join(a, "eval_validation", "results.jsonl"), [
      _eval_row(100, 0.5),
      _eval_row(200, 0.9),    # superseded: the evaluator re-evaluated step 200 after a restart
      _eval_row(200, 0.875),
      _eval_row(300, 0.875, mpc=0.8),  # ties with step 200: best stays at the earlier step
  ], torn_tail='{"step": 4')
  _write_jsonl(os.path.join(a, "eval_test", "results.jsonl"),
               [_eval_row(300, 0.8125, "test", top5=0.9375, mpc=0.78)])
  _write_jsonl(os.path.join(a, "eval_test_best", "results.jsonl"), [_eval_row(200, 0.84, "test", top5=1.0)])

  # A bare run: flags.txt, legacy simple_value train events, validation only as events, no test.
  b = str(root / "mobilenet_v1_025")
  os.makedirs(b)
  with open(os.path.join(b, "flags.txt"), "w") as f:
    f.write("--model_name=mobilenet_v1_025\n--dataset_name=synthetic_flowers\n--train_image_size=96\n--noshuffle\n")
  _write_legacy_scalars(os.path.join(b, "train"), [
      (1000.0, 0, "total_loss", 3.0), (1100.0, 10, "total_loss", 2.0), (1600.0, 30, "total_loss", 1.0),
      (1100.0, 10, "images_per_sec", 100.0), (1300.0, 20, "images_per_sec", 300.0),
      (1600.0, 30, "images_per_sec", 200.0),
      (1100.0, 10, "sec_per_step", 0.5), (1300.0, 20, "sec_per_step", 0.25), (1600.0, 30, "sec_per_step", 0.125),
      (1100.0, 10, "steps_per_hour", 7200.0), (1300.0, 20, "steps_per_hour", 14400.0),
      (1600.0, 30, "steps_per_hour", 28800.0),
  ])
  _write_tf2_scalars(os.path.join(b, "eval_validation"), {"accuracy": [(10, 0.25), (30, 0.5)],
                                                          "mean_per_class_accuracy": [(30, 0.4375)]})
  os.makedirs(root / "not_a_run")
  return root, a, b


EXPECTED_CSV = (
    "run,model,dataset,image_size,trainable_params,gflops,steps,best_val_accuracy,best_val_step,"
    "final_val_accuracy,test_top1,test_top5,best_ckpt_test_top1,best_ckpt_test_top5,"
    "val_mean_per_class_accuracy,test_mean_per_class_accuracy,images_per_sec,sec_per_step,steps_per_hour,"
    "train_wall_secs\n"
    "cifarnet,cifarnet,synthetic_flowers,64,1756426,0.0123,300,0.8750,200,0.8750,0.8125,0.9375,0.8400,1.0000,"
    "0.8000,0.7800,512.25,0.0625,57600.0,3723.4\n"
    "mobilenet_v1_025,mobilenet_v1_025,synthetic_flowers,96,,,30,0.5000,30,0.5000,,,,,"
    "0.4375,,200.00,0.2500,14400.0,600.0\n"
)


def test_exact_table(runs, tmp_path):
  _, a, b = runs
  out = str(tmp_path / "report")
  report = compare.write_report([a, b], out)
  with open(os.path.join(out, "results.csv")) as f:
    table = list(csv.reader(f))
  width = len(EXPECTED_CSV.splitlines()[0].split(","))
  assert "\n".join(",".join(r[:width]) for r in table) + "\n" == EXPECTED_CSV
  # Every accuracy column gets its Wilson interval (scipy's, over the 32 images of its results row).
  header, rows = table[0], [dict(zip(table[0], r)) for r in table[1:]]
  assert header[width:] == [f"{k}_ci_{e}" for k in ("best_val_accuracy", "final_val_accuracy", "test_top1",
                                                     "test_top5", "best_ckpt_test_top1", "best_ckpt_test_top5")
                            for e in ("low", "high")]
  for row in rows:
    for key in header[width::2]:
      column = key[:-len("_ci_low")]
      if row[column] == "" or row["run"] == "mobilenet_v1_025":  # (its validation: events, no image count)
        assert row[key] == row[column + "_ci_high"] == "", key
        continue
      interval = scipy_stats.binomtest(round(float(row[column]) * 32), 32).proportion_ci(method="wilson")
      assert (row[key], row[column + "_ci_high"]) == (f"{interval.low:.4f}", f"{interval.high:.4f}"), key
  lines = [" ".join(line.split()) for line in report.markdown_table.splitlines()]
  assert len(lines) == 4
  assert lines[2] == ("| cifarnet | cifarnet | synthetic_flowers | 64 | 1,756,426 | 0.0123 | 300 | "
                      "87.50 [71.9, 95.0] | 200 | 87.50 [71.9, 95.0] | 81.25 [64.7, 91.1] | 93.75 [79.9, 98.3] | 84.00 [68.2, 93.1] | "
                      "100.00 [89.3, 100.0] | 80.00 | 78.00 | 512.2 | 0.062 | 57,600 | 1:02:03 |")
  assert lines[3] == ("| mobilenet_v1_025 | mobilenet_v1_025 | synthetic_flowers | 96 | n/a | n/a | 30 | 50.00 | 30 | "
                      "50.00 | n/a | n/a | n/a | n/a | 43.75 | n/a | 200.0 | 0.250 | 14,400 | 0:10:00 |")
  with open(os.path.join(out, "results.md")) as f:
    assert report.markdown_table in f.read()
  for name in compare.REPORT_FILES:
    if name.endswith(".png"):
      with open(os.path.join(out, name), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
  assert not [n for n in os.listdir(out) if ".tmp-" in n]


def test_curves_are_read_per_step(runs):
  _, a, b = runs
  run_a, run_b = compare.load_run(a), compare.load_run(b)
  assert run_a.train["total_loss"] == [(0, 2.0), (150, 1.0), (300, 0.5)]
  assert [r["step"] for r in run_a.validation] == [100, 200, 300]
  assert run_b.train["images_per_sec"] == [(10, 100.0), (20, 300.0), (30, 200.0)]
  assert [(r["step"], r["accuracy"]) for r in run_b.validation] == [(10, 0.25), (30, 0.5)]


def test_a_directory_of_runs_stands_for_its_runs(runs, tmp_path):
  root, a, b = runs
  assert compare.resolve_run_dirs([str(root)]) == [a, b]
  report = tmp_path / "report"  # RUNS/* includes the study's report/: skipped, not an error
  report.mkdir()
  (report / "results.csv").write_text("run\n")
  (report / "results.md").write_text("# Run comparison\n")
  assert compare.resolve_run_dirs([a, str(report), b]) == [a, b]


def test_not_a_run_is_a_clear_error(runs):
  root, _, _ = runs
  bad = str(root / "not_a_run")
  with pytest.raises(compare.NotARunError, match="not_a_run.*is not a training run.*--train_dir"):
    compare.resolve_run_dirs([bad])
  # Through `python -m slimflowers.compare` (exit 2, one line): test_cli.py::test_python_m_nets_and_compare_are_quiet.


def test_cli_prints_the_table(runs, tmp_path):
  _, a, b = runs
  out = str(tmp_path / "cli_report")
  result = subprocess.run([sys.executable, "-m", "slimflowers.compare", a, b, f"--output={out}"], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "| cifarnet | cifarnet | synthetic_flowers | 64 |" in " ".join(result.stdout.split())
  assert os.path.join(out, "accuracy_vs_params.png") in result.stdout
  library = compare.write_report([a, b], str(tmp_path / "library_report"))
  for name in ("results.csv", "pairwise.csv"):
    with open(os.path.join(out, name)) as f, open(library.paths[name]) as g:
      assert f.read() == g.read(), name
  with open(os.path.join(out, "results.csv")) as f:
    assert f.read().startswith(EXPECTED_CSV.splitlines()[0] + ",best_val_accuracy_ci_low,")


def test_a_run_at_chance_is_marked_and_has_no_best(runs, tmp_path):
  """The evaluator's check (slimflowers/eval/sanity.py) travels with each result; a run at chance shows no best."""
  _, a, _ = runs
  c = str(tmp_path / "chance")
  os.makedirs(os.path.join(c, "eval_validation"))
  with open(os.path.join(c, "run_info.json"), "w") as f:
    json.dump({"model_name": "mobilenet_v1_025", "dataset_name": "digits", "final_step": 400, "finished": True}, f)
  at_chance = {"at_chance": True, "below_training": True, "accuracy": 0.078, "train_accuracy": 0.45, "chance": 0.1}
  _write_jsonl(os.path.join(c, "eval_validation", "results.jsonl"),
               [{**_eval_row(200, 0.09), "sanity": at_chance}, {**_eval_row(400, 0.078), "sanity": at_chance}])
  report = compare.write_report([a, c], str(tmp_path / "report"))
  row = {r["run"]: r for r in report.rows}["chance"]
  assert row["best_val_accuracy"] is None and row["best_val_step"] is None
  assert row["final_val_accuracy"] == pytest.approx(0.078) and row["status"] == "NOT LEARNING: at chance"
  assert {r["run"]: r for r in report.rows}["cifarnet"]["status"] == ""
  assert report.markdown_table.splitlines()[0].split("|")[-2].strip() == "warning"
  with open(os.path.join(str(tmp_path / "report"), "results.md")) as f:
    md = f.read()
  assert "**Runs whose numbers are not results**" in md and "`chance`: NOT LEARNING: at chance" in md
