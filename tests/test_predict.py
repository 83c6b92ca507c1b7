"""predict_image_classifier.py: one row per file, in order, with the checkpoint's probabilities or an error.

One tiny cifarnet run and its export (SavedModel + float32 TFLite) are made in this process. The
expected probabilities come from the checkpoint read into a fresh `nets` model, with the evaluator's
preprocessing (non-JPEG files decoded by PIL), never from slimflowers/deploy/predict.py or export.py.
"""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
import nets
from slimflowers.core import errors
from slimflowers.deploy import export
from slimflowers.deploy import predict
from slimflowers.data import preprocessing
from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "predict_image_classifier.py")
NAMES = ["class_0", "class_1", "class_2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  import keras  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  tmp = tmp_path_factory.mktemp("run")
  photos = tiny_data.write_folder(str(tmp / "photos"), num_classes=3, per_class=8)
  data = str(tmp / "converted")
  datasets.convert("folder", data, source=photos, validation_size=0.25, num_workers=1)
  train_dir = str(tmp / "train")
  policy = keras.mixed_precision.global_policy()
  try:
    train.run(train_flags.config(
        train_dir=train_dir, dataset_dir=data, dataset_name="folder", model_name="cifarnet", train_image_size=32,
        preprocessing_name="inception", batch_size=8, max_number_of_steps=20, optimizer="momentum",
        learning_rate=0.05, save_interval_secs=0, log_every_n_steps=10, num_gpus=0))
  finally:
    keras.mixed_precision.set_global_policy(policy)
  export_dir = str(tmp / "export")
  export.export_run(train_dir, export_dir, quantize=("float32",))  # no --dataset_dir: not verified, fast
  return {"photos": photos, "train_dir": train_dir, "export_dir": export_dir}


@pytest.fixture(scope="module")
def inputs(run, tmp_path_factory):
  """A folder of images in several formats, a nested sub-folder, broken files and a hidden file.

  Returns (folder, {path: expected probabilities or None for a file that must fail}) in expected row order.
  """
  root = tmp_path_factory.mktemp("inputs") / "photos"
  (root / "sub" / "deeper").mkdir(parents=True)
  jpeg = lambda c, i: open(os.path.join(run["photos"], f"class_{c}", f"img_{i:03d}.jpg"), "rb").read()
  pil = lambda data: Image.open(io.BytesIO(data))

  def encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()

  files = {
      "a.jpg": jpeg(0, 1),
      "b.png": encode(pil(jpeg(1, 2)).convert("RGB"), "PNG"),
      "broken.jpg": jpeg(2, 3)[:300],
      "c_gray.jpg": encode(pil(jpeg(2, 4)).convert("L"), "JPEG"),
      "empty.jpg": b"",
      "notes.txt": b"not an image\n",
      "sub/d.jpg": jpeg(2, 5),
      "sub/deeper/e.bmp": encode(pil(jpeg(1, 6)).convert("RGB"), "BMP"),
      ".hidden.jpg": jpeg(0, 7),  # skipped: names starting with "."
  }
  for name, data in files.items():
    (root / name).write_bytes(data)

  model = nets.get_model("cifarnet", 3)
  model(tf.zeros([1, 32, 32, 3]))
  tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(run["train_dir"])).expect_partial()

  def expected(name, data):
    if name in ("broken.jpg", "empty.jpg", "notes.txt"):
      return None
    if name.endswith(".jpg"):
      image = preprocessing.preprocess_eval(tf.constant(data), 32, "inception")
    else:
      image = preprocessing.preprocess_eval_image(tf.constant(np.asarray(pil(data).convert("RGB"))), 32, "inception")
    return tf.nn.softmax(model(image[None], training=False)).numpy()[0]

  ordered = sorted(n for n in files if not n.startswith("."))
  return str(root), {os.path.join(str(root), n): expected(n, files[n]) for n in ordered}


def _check_row(path, labels, probabilities, error, expected, top_k, atol):
  if expected is None:
    assert error and not any(labels), path
    return
  assert not error, (path, error)
  best = np.argsort(-expected, kind="stable")[:top_k]
  assert labels == [NAMES[c] for c in best], path
  np.testing.assert_allclose(probabilities, expected[best], atol=atol, err_msg=path)


def test_cli_writes_one_csv_row_per_file_with_error_rows(run, inputs, tmp_path):
  folder, expected = inputs
  output = str(tmp_path / "predictions.csv")
  proc = subprocess.run([sys.executable, SCRIPT, f"--model={run['export_dir']}", folder, "--top_k=2",
                         f"--output={output}", "--batch_size=2"], capture_output=True, text=True, cwd=ROOT,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(output) as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["path", "label_1", "probability_1", "label_2", "probability_2", "error"]
  assert [r[0] for r in rows[1:]] == list(expected)
  for row in rows[1:]:
    probabilities = [float(p) for p in row[2:5:2] if p]
    _check_row(row[0], [label for label in row[1:5:2] if label], probabilities, row[5], expected[row[0]], 2, 2e-6)
  errors_by_name = {os.path.basename(r[0]): r[5] for r in rows[1:] if r[5]}
  assert "Unknown image file format" in errors_by_name["notes.txt"]
  assert "Input is empty" in errors_by_name["empty.jpg"]
  assert "{{" not in errors_by_name["broken.jpg"] and "[Op:" not in errors_by_name["broken.jpg"]
  assert "Classified 5 of 8 files" in proc.stdout and "3 could not be classified" in proc.stdout
  assert "JPEG" not in proc.stderr  # libjpeg's own complaints stay off the console


def test_tflite_model_writes_json_lines(run, inputs, tmp_path):
  folder, expected = inputs
  output = str(tmp_path / "predictions.jsonl")
  predict.run(os.path.join(run["export_dir"], "model_float32.tflite"), [folder], top_k=5, output=output)
  with open(output) as f:
    rows = [json.loads(line) for line in f]
  assert [r["path"] for r in rows] == list(expected)
  for row in rows:
    assert len(row["top_k"]) == (0 if row["error"] else 3)  # top-5 of 3 classes
    _check_row(row["path"], [p["label"] for p in row["top_k"]], [p["probability"] for p in row["top_k"]],
               row["error"], expected[row["path"]], 3, 1e-4)
    assert [p["class_id"] for p in row["top_k"]] == [NAMES.index(p["label"]) for p in row["top_k"]]


def test_checkpoint_prints_the_top1_of_each_file(run, inputs, capsys):
  folder, expected = inputs
  good = os.path.join(folder, "a.jpg")
  missing = os.path.join(folder, "missing.jpg")
  predict.run(run["train_dir"], [good, missing])
  lines = capsys.readouterr().out.splitlines()
  path, label, probability = lines[0].split("\t")
  assert (path, label) == (good, NAMES[int(expected[good].argmax())])
  assert float(probability) == pytest.approx(float(expected[good].max()), abs=1e-4)
  assert lines[1].startswith(f"{missing}\terror: ") and "No such file" in lines[1]


def test_no_classifiable_file_is_an_error(run, inputs):
  folder, _ = inputs
  with pytest.raises(predict.NothingClassified, match="None of the 2 file"):
    predict.run(run["export_dir"], [os.path.join(folder, "notes.txt"), os.path.join(folder, "broken.jpg")])
  assert predict.NothingClassified.exit_code != 0


def test_a_run_that_has_not_finished_says_so(run, tmp_path, caplog):
  import shutil  # pylint: disable=g-import-not-at-top
  unfinished = tmp_path / "unfinished"
  shutil.copytree(run["train_dir"], unfinished)
  info = json.loads((unfinished / "run_info.json").read_text())
  (unfinished / "run_info.json").write_text(json.dumps({**info, "finished": False, "max_steps": 40}))
  with caplog.at_level("WARNING"):
    predict.load_predictor(str(unfinished))
  (line,) = [r.getMessage() for r in caplog.records if "has not finished training" in r.getMessage()]
  assert "its checkpoint at step 20 of 40, not from its final model" in line
  caplog.clear()
  predict.load_predictor(run["train_dir"])
  assert not [r for r in caplog.records if "has not finished" in r.getMessage()]


def test_paths_globs_and_bad_models(run, inputs, tmp_path):
  folder, _ = inputs
  assert predict.list_files([os.path.join(folder, "*.png")]) == [os.path.join(folder, "b.png")]
  (tmp_path / "empty").mkdir()
  with pytest.raises(errors.NotFound, match="No files to classify"):
    predict.list_files([str(tmp_path / "empty")])
  with pytest.raises(errors.NotFound, match="not an export directory.*not a .tflite file"):
    predict.load_predictor(str(tmp_path / "nowhere"))
  with pytest.raises(errors.NotFound, match="without checkpoints") as e:
    predict.load_predictor(str(tmp_path / "empty"))
  assert "--continuous" not in str(e.value)  # the evaluator's flag, not predict's
  with pytest.raises(errors.BadValue, match="--use_ema applies to checkpoints only"):
    predict.load_predictor(run["export_dir"], use_ema=True)
  with pytest.raises(errors.BadValue, match=r"\.csv or \.jsonl"):
    predict.run(run["export_dir"], [folder], output=str(tmp_path / "out.txt"))
