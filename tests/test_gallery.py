"""Mistakes gallery and label issues (slimflowers/deploy/gallery.py) from files in predictions.csv's format."""
import csv

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
import nets
from datasets import records
from slimflowers.core import errors
from slimflowers.deploy import gallery
from tests import tiny_data

NAMES = ["class_0", "class_1", "class_2"]


def _write_predictions(path, rows, k=3):
  header = ["filename", "label", "prediction", "probability", "label_probability"]
  header += [c for i in range(1, k + 1) for c in (f"top{i}", f"top{i}_probability")]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for filename, label, probs in rows:
      order = np.argsort(-np.asarray(probs), kind="stable")[:k]
      writer.writerow([filename, label, int(order[0]), f"{probs[order[0]]:.6g}", f"{probs[label]:.6g}"] +
                      [v for c in order for v in (int(c), f"{probs[c]:.6g}")])


def _filenames(split):
  ds = tf.data.TFRecordDataset(split.filenames).map(
      lambda r: records.parse_example(r, keys=("image/filename", "image/class/label")))
  return [(e["image/filename"].decode(), int(e["image/class/label"])) for e in ds.as_numpy_iterator()]


@pytest.fixture(scope="module")
def split_and_rows(tiny_dataset, tmp_path_factory):
  split = datasets.get_split("folder", "validation", tiny_dataset)
  rng = np.random.default_rng(0)
  rows = []
  for filename, label in _filenames(split):
    probs = rng.dirichlet([1, 1, 1])
    rows.append((filename, label, probs))
  path = str(tmp_path_factory.mktemp("preds") / "predictions.csv")
  _write_predictions(path, rows)
  return split, rows, path


def test_reads_the_contract_and_refuses_other_files(split_and_rows, tmp_path):
  _, rows, path = split_and_rows
  read = gallery.read_predictions(path)
  assert [r["filename"] for r in read] == [r[0] for r in rows]
  for r, (_, label, probs) in zip(read, rows):
    assert r["label"] == label and r["prediction"] == int(np.argmax(probs))
    assert abs(r["label_probability"] - probs[label]) < 1e-5 and len(r["top"]) == 3
  other = tmp_path / "other.csv"
  other.write_text("path,label_1,probability_1,error\nx.jpg,a,0.5,\n")  # predict_image_classifier.py's format
  with pytest.raises(errors.BadValue, match="is not an evaluator predictions.csv"):
    gallery.read_predictions(str(other))


def test_mistakes_most_confident_first_at_most_8_per_class_and_64():
  # Class 0's 12 mistakes are the most confident of all: only 8 of them may be shown.
  rows = [{"filename": f"c{c}_{i}.jpg", "label": c, "prediction": (c + 1) % 10,
           "probability": 0.5 + 0.004 * i + c * 1e-4 + (0.4 if c == 0 else 0.0), "label_probability": 0.1}
          for c in range(10) for i in range(12)]
  rows += [{"filename": "right.jpg", "label": 0, "prediction": 0, "probability": 0.99, "label_probability": 0.99}]
  taken = gallery.most_confident_mistakes(rows)
  assert len(taken) == 64 and "right.jpg" not in [r["filename"] for r in taken]
  assert max(np.bincount([r["label"] for r in taken])) == 8
  assert [r["probability"] for r in taken] == sorted((r["probability"] for r in taken), reverse=True)
  # The 64 are the most confident allowed: every mistake left out is less confident than the last one taken, or
  # its class is full.
  per = np.bincount([r["label"] for r in taken], minlength=10)
  for r in rows:
    if r not in taken and r["prediction"] != r["label"]:
      assert per[r["label"]] == 8 or r["probability"] <= taken[-1]["probability"]


def test_images_are_found_by_file_name_and_label(split_and_rows):
  split, rows, _ = split_and_rows
  names = [r[0] for r in rows]
  assert len(set(names)) < len(names)  # base names repeat across class folders (img_003.jpg in two classes)
  both = [(n, label) for n, label, _ in rows if names.count(n) > 1]
  found = gallery.encoded_images(split, both)
  assert len(found) == len(both) and len(set(found.values())) == len(both)


def test_label_issues_csv_ranks_the_least_likely_label_first(split_and_rows, tmp_path):
  split, _, path = split_and_rows
  rows = gallery.read_predictions(path)
  first = gallery.write_label_issues(str(tmp_path), rows, split, NAMES, step=3)
  with open(tmp_path / gallery.LABEL_ISSUES_CSV) as f:
    table = list(csv.DictReader(f))
  assert len(table) == len(rows) and [int(t["rank"]) for t in table] == list(range(1, len(rows) + 1))
  probabilities = [float(t["label_probability"]) for t in table]
  assert probabilities == sorted(probabilities)
  assert table[0]["label_name"] == NAMES[int(table[0]["label"])]
  assert table[0]["prediction_name"] == NAMES[int(table[0]["prediction"])]
  assert [r["filename"] for r in first] == [t["filename"] for t in table[:len(first)]]
  png = Image.open(tmp_path / gallery.LABEL_ISSUES_PNG)
  assert png.size[0] >= 8 * 100 and png.mode == "RGB"  # a grid of 8 columns (9 examples)
  assert tiny_data.summary_steps(str(tmp_path)) == {"label_issues": [3]}


def test_mistakes_summary_with_gradcam_overlays(split_and_rows, tmp_path):
  split, _, path = split_and_rows
  rows = gallery.read_predictions(path)
  model = nets.get_model("cifarnet", 3)
  explainer = gallery.Explainer(model, "cifarnet", 32, "cifarnet")
  mistakes = gallery.write_mistakes_summary(str(tmp_path), rows, split, NAMES, step=7, explainer=explainer)
  assert mistakes and all(r["label"] != r["prediction"] for r in mistakes)
  assert tiny_data.summary_steps(str(tmp_path)) == {"mistakes": [7]}
  assert Image.open(tmp_path / gallery.MISTAKES_PNG).mode == "RGB"
  key = (mistakes[0]["filename"], mistakes[0]["label"])
  encoded = gallery.encoded_images(split, [key])[key]
  overlay = explainer.overlays([encoded], [mistakes[0]["prediction"]])[0]
  photo = tf.io.decode_jpeg(encoded).numpy()
  assert overlay.shape == photo.shape and not np.array_equal(overlay, photo)
