"""export_image_classifier.py: the exported files reproduce the checkpoint, checked from outside the exporter.

One tiny cifarnet run (inception preprocessing, so JPEGs take the decode-and-crop path) is trained in
this process and exported once by the real script. The references never go through
slimflowers/deploy/export.py: the checkpoint is read into a fresh `nets` model with tf.train.Checkpoint,
images are preprocessed by the evaluator's functions (non-JPEG files decoded by PIL), the SavedModel
runs in a separate Python that cannot import this project, and the TFLite files run through the
low-level LiteRT API. Some training images are mislabelled on purpose, so the checkpoint makes
mistakes and an accuracy that is merely copied from the checkpoint could not pass.
"""
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
import nets
from slimflowers.study import compare
from slimflowers.core import errors
from slimflowers.deploy import export
from slimflowers.deploy import verification
from slimflowers.deploy import serving
from slimflowers.eval import model_source
from slimflowers.data import preprocessing
from slimflowers.core import run_dir
from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "export_image_classifier.py")
STEPS = 30
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# Bounds for the quantized variants: ~10x what they reach here, far below what a wrong scale or a
# calibration on the wrong images gives (logits off by their own size).
MAX_RELATIVE_DIFF = {"float32": 1e-4, "float16": 1e-3, "dynamic": 2e-2, "int8": 0.1}


def _relative_difference(logits, reference):
  """Per example max|difference| over that example's largest |reference logit|; the max over examples."""
  return float((np.abs(logits - reference).max(axis=1) / np.abs(reference).max(axis=1)).max())


def _softmax(logits):
  shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
  return shifted / shifted.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------------------------------
# The run, its export, and the independent references


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """3 colour classes; 3 images per class carry the next class's colour (label noise the model cannot learn)."""
  tmp = tmp_path_factory.mktemp("data")
  photos = tiny_data.write_folder(str(tmp / "photos"), num_classes=3, per_class=14)
  for c in range(3):
    for i in range(3):
      shutil.copy(os.path.join(photos, f"class_{(c + 1) % 3}", f"img_{i:03d}.jpg"),
                  os.path.join(photos, f"class_{c}", f"mislabelled_{i}.jpg"))
  out = str(tmp / "converted")
  datasets.convert("folder", out, source=photos, validation_size=0.2, test_size=0.3, num_workers=1)
  return out


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
  import keras  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  train_dir = str(tmp_path_factory.mktemp("run"))
  policy = keras.mixed_precision.global_policy()
  try:
    train.run(train_flags.config(
        train_dir=train_dir, dataset_dir=data, dataset_name="folder", model_name="cifarnet", train_image_size=32,
        preprocessing_name="inception", batch_size=8, max_number_of_steps=STEPS, optimizer="momentum",
        learning_rate=0.05, save_interval_secs=0, log_every_n_steps=10, moving_average_decay=0.9, num_gpus=0))
  finally:
    keras.mixed_precision.set_global_policy(policy)
  return train_dir


@pytest.fixture(scope="module")
def exported(run, data, tmp_path_factory):
  """The real script, all four TFLite variants, verified on the test split."""
  out = str(tmp_path_factory.mktemp("export") / "cifarnet")
  proc = subprocess.run([sys.executable, SCRIPT, f"--checkpoint_path={run}", f"--output_dir={out}",
                         f"--dataset_dir={data}", "--num_calibration_images=16", "--batch_size=8", "--top_k=5"],
                        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
  assert proc.returncode == 0, f"export failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
  return out, proc.stdout


@pytest.fixture(scope="module")
def reference(run):
  """The checkpoint's weights in a fresh net, and the evaluator's preprocessing: logits of JPEG bytes or pixels."""
  model = nets.get_model("cifarnet", 3)
  model(tf.zeros([1, 32, 32, 3]))
  prefix = tf.train.latest_checkpoint(run)
  tf.train.Checkpoint(model=model).read(prefix).expect_partial().assert_existing_objects_matched()

  class Reference:
    checkpoint = prefix

    @staticmethod
    def preprocess_jpeg(jpeg):
      return preprocessing.preprocess_eval(tf.constant(jpeg), 32, "inception").numpy()

    @staticmethod
    def preprocess_pixels(array):
      return preprocessing.preprocess_eval_image(tf.constant(array), 32, "inception").numpy()

    @staticmethod
    def logits(images):
      return model(np.asarray(images, np.float32), training=False).numpy()

  return Reference


@pytest.fixture(scope="module")
def test_split(data, reference):
  """The test split's records in file order, read with protobuf: serialized, JPEG bytes, labels, images."""
  meta = json.loads(open(os.path.join(data, "dataset.json")).read())
  files = sorted(os.path.join(data, f) for f in meta["splits"]["test"]["files"])
  serialized = [r.numpy() for r in tf.data.TFRecordDataset(files)]
  jpegs, labels = [], []
  for record in serialized:
    example = tf.train.Example.FromString(record)
    jpegs.append(example.features.feature["image/encoded"].bytes_list.value[0])
    labels.append(example.features.feature["image/class/label"].int64_list.value[0])
  images = np.stack([reference.preprocess_jpeg(j) for j in jpegs])
  names = [line.split(":", 1)[1] for line in open(os.path.join(data, "labels.txt")).read().splitlines()]
  return {"serialized": serialized, "jpegs": jpegs, "labels": np.array(labels), "images": images, "names": names,
          "logits": reference.logits(images)}


def _encode(image, fmt, mode="RGB"):
  buffer = io.BytesIO()
  image.convert(mode).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.fixture(scope="module")
def other_formats(test_split):
  """One test photo in other encodings: {name: (bytes, the RGB pixels PIL decodes from them)}."""
  photo = Image.open(io.BytesIO(test_split["jpegs"][0])).convert("RGB")
  encoded = {"png": _encode(photo, "PNG"), "bmp": _encode(photo, "BMP"), "gif": _encode(photo, "GIF", "P"),
             "webp": _encode(photo, "WEBP"), "png_rgba": _encode(photo, "PNG", "RGBA"),
             "jpeg_gray": _encode(photo, "JPEG", "L"), "jpeg_cmyk": _encode(photo, "JPEG", "CMYK")}
  return {k: (v, np.asarray(Image.open(io.BytesIO(v)).convert("RGB"))) for k, v in encoded.items()}


# Runs in a fresh Python whose sys.path does not hold this repository: plain TensorFlow only.
_FRESH = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    import tensorflow as tf
    saved_model, inputs, output, repo = sys.argv[1:]
    assert not any(p and __import__("os").path.abspath(p) == repo for p in sys.path), sys.path
    x = pickle.load(open(inputs, "rb"))
    loaded = tf.saved_model.load(saved_model)
    s = loaded.signatures
    results = {"signatures": sorted(s.keys())}
    def run(tag, name, **kwargs):
      for key, value in s[name](**kwargs).items():
        results[f"{tag}/{key}"] = value.numpy()
    run("default", "serving_default", image_bytes=tf.constant(x["jpegs"]))
    run("default1", "serving_default", image_bytes=tf.constant(x["jpegs"][:1]))
    run("formats", "serving_default", image_bytes=tf.constant(x["formats"]))
    run("images", "serving_images", images=tf.constant(x["pixels"]))
    run("examples", "serving_examples", examples=tf.constant(x["serialized"]))
    run("preprocessed", "serving_preprocessed", preprocessed_images=tf.constant(x["images"]))
    try:
      s["serving_default"](image_bytes=tf.constant(x["bad_batch"]))
      results["bad_batch_error"] = "no error"
    except tf.errors.InvalidArgumentError as e:
      results["bad_batch_error"] = e.message
    results["project_modules"] = [m for m in ("slimflowers", "nets", "datasets") if m in sys.modules]
    pickle.dump(results, open(output, "wb"))
""")


@pytest.fixture(scope="module")
def fresh(exported, test_split, other_formats, tmp_path_factory):
  export_dir, _ = exported
  work = tmp_path_factory.mktemp("fresh")
  pixels = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in test_split["jpegs"][:3]])
  truncated = test_split["jpegs"][2][:len(test_split["jpegs"][2]) // 2]
  inputs = {"jpegs": test_split["jpegs"], "serialized": test_split["serialized"], "images": test_split["images"],
            "formats": [v for v, _ in other_formats.values()], "pixels": pixels,
            "bad_batch": [test_split["jpegs"][0], test_split["jpegs"][1], truncated, test_split["jpegs"][3]]}
  with open(work / "inputs.pkl", "wb") as f:
    pickle.dump(inputs, f)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run([sys.executable, "-c", _FRESH, os.path.join(export_dir, "saved_model"),
                         str(work / "inputs.pkl"), str(work / "out.pkl"), ROOT], cwd=str(work), env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-5000:]
  with open(work / "out.pkl", "rb") as f:
    return pickle.load(f), pixels


# ----------------------------------------------------------------------------------------------------------------------
# The SavedModel, from a process without the project


def test_saved_model_loads_with_plain_tensorflow(fresh):
  results, _ = fresh
  assert results["signatures"] == sorted(serving.SIGNATURES)
  assert results["project_modules"] == []


def _check_outputs(results, tag, reference_logits, names, top_k=3):
  logits = results[f"{tag}/logits"]
  assert logits.dtype == np.float32 and logits.shape == reference_logits.shape
  assert _relative_difference(logits, reference_logits) < 1e-4, tag
  np.testing.assert_allclose(results[f"{tag}/probabilities"], _softmax(reference_logits), atol=1e-5)
  best = np.argsort(-reference_logits, axis=1, kind="stable")[:, :top_k]  # top-5 of 3 classes is top-3
  assert results[f"{tag}/top_k_classes"].dtype == np.int32
  np.testing.assert_array_equal(results[f"{tag}/top_k_classes"], best)
  np.testing.assert_allclose(results[f"{tag}/top_k_probabilities"],
                             np.take_along_axis(_softmax(reference_logits), best, axis=1), atol=1e-5)
  labels = [[n.decode() for n in row] for row in results[f"{tag}/top_k_labels"]]
  assert labels == [[names[c] for c in row] for row in best]


def test_jpeg_bytes_and_examples_give_the_evaluators_logits(fresh, test_split):
  results, _ = fresh
  for tag in ("default", "examples", "preprocessed"):
    _check_outputs(results, tag, test_split["logits"], test_split["names"])
  _check_outputs(results, "default1", test_split["logits"][:1], test_split["names"])


def test_uint8_images_give_the_evaluators_logits(fresh, reference, test_split):
  results, pixels = fresh
  expected = reference.logits(np.stack([reference.preprocess_pixels(p) for p in pixels]))
  _check_outputs(results, "images", expected, test_split["names"])


def test_png_gif_bmp_webp_grayscale_and_cmyk_decode_to_rgb(fresh, reference, other_formats):
  results, _ = fresh
  logits = results["formats/logits"]
  for i, (name, (_, rgb)) in enumerate(other_formats.items()):
    expected = reference.logits(reference.preprocess_pixels(rgb)[None])
    # Lossless formats decode to PIL's pixels exactly; JPEG decoders differ by a few grey levels.
    bound = 1e-4 if name in ("png", "bmp", "gif", "png_rgba") else 0.05
    assert _relative_difference(logits[i:i + 1], expected) < bound, name
    assert logits[i].argmax() == expected[0].argmax(), name


def test_an_undecodable_image_fails_the_batch_naming_its_index(fresh):
  results, _ = fresh
  assert "Undecodable image(s) at batch index [2] (batch size 4)" in results["bad_batch_error"]


# ----------------------------------------------------------------------------------------------------------------------
# TFLite, through the low-level LiteRT API


def _run_tflite(path, images):
  """(input details, output details, float logits) of the .tflite file on float images."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_path=path, num_threads=1)
  inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
  interpreter.resize_tensor_input(inp["index"], list(images.shape))
  interpreter.allocate_tensors()
  x = images
  if inp["dtype"] == np.uint8:
    scale, zero_point = inp["quantization"]
    x = np.clip(np.round(images / scale + zero_point), 0, 255).astype(np.uint8)
  interpreter.set_tensor(inp["index"], x)
  interpreter.invoke()
  y = interpreter.get_tensor(out["index"])
  if out["dtype"] == np.uint8:
    scale, zero_point = out["quantization"]
    y = (y.astype(np.float32) - zero_point) * scale
  return inp, out, y


@pytest.fixture(scope="module")
def tflite_runs(exported, test_split):
  export_dir, _ = exported
  return {q: _run_tflite(os.path.join(export_dir, f"model_{q}.tflite"), test_split["images"])
          for q in QUANTIZATIONS}


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_tflite_variant_dtypes_quantization_and_logits(quantization, exported, tflite_runs, test_split):
  export_dir, _ = exported
  described = json.loads(open(os.path.join(export_dir, "export.json")).read())["tflite"][quantization]
  inp, out, logits = tflite_runs[quantization]
  dtype = np.uint8 if quantization == "int8" else np.float32
  assert inp["dtype"] == dtype and out["dtype"] == dtype
  assert list(inp["shape_signature"]) == [-1, 32, 32, 3]
  assert described["input"]["dtype"] == np.dtype(dtype).name
  if quantization == "int8":
    for key, details in (("input", inp), ("output", out)):
      scale, zero_point = details["quantization"]
      assert described[key]["quantization"] == {"scale": pytest.approx(scale, rel=1e-7), "zero_point": zero_point}
    # Calibrated on the [-1, 1] inception images: about 2/255 per step around 128.
    assert described["input"]["quantization"]["scale"] == pytest.approx(2 / 255, rel=0.05)
  else:
    assert "quantization" not in described["input"]
  assert _relative_difference(logits, test_split["logits"]) < MAX_RELATIVE_DIFF[quantization]


# ----------------------------------------------------------------------------------------------------------------------
# The report


def test_report_agrees_with_an_independent_evaluation(exported, fresh, tflite_runs, test_split):
  export_dir, stdout = exported
  report = json.loads(open(os.path.join(export_dir, run_dir.EXPORT_REPORT)).read())
  labels, reference = test_split["labels"], test_split["logits"]
  accuracy = float(np.mean(reference.argmax(axis=1) == labels))
  assert 0 < accuracy < 1, "the fixture's checkpoint must make some mistakes for this test to mean anything"
  assert report["verify_split"] == "test" and report["num_examples"] == len(labels) and report["failures"] == []
  rows = {r["artifact"]: r for r in report["artifacts"]}
  assert list(rows) == ["checkpoint", "saved_model"] + [f"tflite_{q}" for q in QUANTIZATIONS]
  assert rows["checkpoint"]["top1"] == pytest.approx(accuracy)
  outputs = {"saved_model": fresh[0]["examples/logits"]}
  outputs.update({f"tflite_{q}": tflite_runs[q][2] for q in QUANTIZATIONS})
  for name, logits in outputs.items():
    row = rows[name]
    top1 = float(np.mean(logits.argmax(axis=1) == labels))
    assert row["top1"] == pytest.approx(top1), name
    assert row["change_points"] == pytest.approx(100 * (top1 - accuracy)), name
    assert row["agreement"] == pytest.approx(float(np.mean(logits.argmax(axis=1) == reference.argmax(axis=1)))), name
    assert row["max_relative_logit_difference"] == pytest.approx(_relative_difference(logits, reference),
                                                                 rel=1e-3, abs=1e-6), name
    assert row["latency_ms"] > 0 and row["images_per_sec"] > 0, name
    path = os.path.join(export_dir, row["file"])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) \
        if os.path.isdir(path) else os.path.getsize(path)
    assert row["size_mb"] == pytest.approx(size / 1e6), name
    assert f"| {name} " in stdout
  assert report["summary"]["int8_top1"] == rows["tflite_int8"]["top1"]
  assert report["summary"]["cpu_latency_ms"] == rows["tflite_int8"]["latency_ms"]


def test_export_json_and_labels_say_what_an_app_needs(exported, reference, test_split):
  export_dir, _ = exported
  described = json.loads(open(os.path.join(export_dir, "export.json")).read())
  assert (described["model_name"], described["num_classes"], described["image_size"]) == ("cifarnet", 3, 32)
  # The checkpoint relative to its run's parent: no local path ships with the model.
  run_name = os.path.basename(os.path.dirname(reference.checkpoint))
  assert described["checkpoint"] == f"{run_name}/{os.path.basename(reference.checkpoint)}"
  assert described["step"] == STEPS
  assert described["preprocessing"]["formula"] == "x / 127.5 - 1"
  assert "central crop 0.875" in described["preprocessing"]["resize_and_crop"]
  assert sorted(described["tflite"]) == sorted(QUANTIZATIONS)
  assert open(os.path.join(export_dir, described["labels_file"])).read() == "".join(
      f"{i}:{n}\n" for i, n in enumerate(test_split["names"]))
  assert not [n for n in os.listdir(os.path.dirname(export_dir)) if ".tmp-" in n]


def test_verification_failures_name_the_artifact():
  def row(artifact, quantization, change, agreement=1.0, difference=0.0):
    return {"artifact": artifact, "quantization": quantization, "file": artifact, "top1": 0.5,
            "change_points": change, "agreement": agreement, "max_relative_logit_difference": difference}

  rows = [row("checkpoint", None, 0.0), row("saved_model", "float32", 0.0, difference=5e-5),
          row("tflite_float32", "float32", 0.0, agreement=0.998), row("tflite_float16", "float16", -1.9),
          row("tflite_int8", "int8", -2.5, agreement=0.9, difference=0.2)]
  failures = verification.verification_failures(rows, max_accuracy_drop=2.0)
  assert len(failures) == 2
  assert failures[0].startswith("tflite_float32") and "99.80 %" in failures[0] and "bug" in failures[0]
  assert failures[1].startswith("tflite_int8") and "2.50 points" in failures[1] and "--max_accuracy_drop" in failures[1]
  assert verification.verification_failures(rows[:2] + [row("x", "float32", 0.0, difference=2e-4)],
                                            2.0)[0].startswith("x ")


# ----------------------------------------------------------------------------------------------------------------------
# Without a dataset, other checkpoints, errors


def test_without_dataset_dir_int8_and_verification_are_skipped(run, tmp_path, capsys):
  out = str(tmp_path / "export")
  os.makedirs(out)  # an empty directory is written into
  report = export.export_run(run, out, formats=("tflite",), quantize=("float32", "int8"))
  assert sorted(os.listdir(out)) == sorted(["export.json", "export_report.json", "labels.txt",
                                            "model_float32.tflite", run_dir.EXPORT_MANIFEST])
  assert any(s.startswith("int8: skipped") for s in report["skipped"])
  assert any(s.startswith("verification: skipped") for s in report["skipped"])
  assert [r["artifact"] for r in report["artifacts"]] == ["checkpoint", "tflite_float32"]
  assert all(r["top1"] is None for r in report["artifacts"])
  assert "(not verified)" in capsys.readouterr().out
  # The class names come from the run (run_info.json) even without a dataset.
  assert open(os.path.join(out, "labels.txt")).read() == "0:class_0\n1:class_1\n2:class_2\n"


def test_the_export_of_a_checkpoint_at_chance_warns_loudly(run, data, tmp_path, caplog):
  """A net that answers one class for every image (all weights zero): exported, checked, and called out."""
  from slimflowers.core import checkpoints  # pylint: disable=g-import-not-at-top
  from slimflowers.deploy import export  # pylint: disable=g-import-not-at-top
  prefix = tf.train.latest_checkpoint(run)
  model = nets.get_model("cifarnet", 3)
  model.set_weights([np.zeros_like(w) for w in model.get_weights()])
  checkpoints.make_checkpoint(global_step=tf.Variable(7, dtype=tf.int64), model=model,
                              model_config=checkpoints.read_model_config(prefix)).write(str(tmp_path / "ckpt-7"))
  with caplog.at_level("WARNING"):
    report = export.export_run(str(tmp_path / "ckpt-7"), str(tmp_path / "out"), dataset_dir=data,
                               formats=("tflite",), quantize=("float32",), batch_size=8)
  assert report["artifacts"][0]["sanity"]["at_chance"]
  (line,) = [r.getMessage() for r in caplog.records if "THIS EXPORTED MODEL DOES NOT WORK" in r.getMessage()]
  assert "is no better than chance" in line and "Likely causes" in line


def test_a_directory_that_is_not_an_export_is_never_replaced(run, tmp_path):
  (tmp_path / "precious.txt").write_text("keep me")
  with pytest.raises(errors.BadValue, match="is not an export"):
    export.export_run(run, str(tmp_path), formats=("tflite",), quantize=("float32",))
  assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_model_only_best_copy_under_mixed_precision_exports_as_float32(run, reference, test_split, tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  # A best/ copy holding only the model (what the evaluator keeps when the checkpoint was rotated away):
  # no model_config inside, so everything comes from the run's run_info.json, two levels up.
  run_copy = tmp_path / "run"
  best = run_copy / "eval_validation" / "best"
  os.makedirs(best)
  shutil.copy(os.path.join(run, run_dir.RUN_INFO), run_copy)
  model = nets.get_model("cifarnet", 3)
  model(tf.zeros([1, 32, 32, 3]))
  tf.train.Checkpoint(model=model).read(reference.checkpoint).expect_partial()
  tf.train.Checkpoint(global_step=tf.Variable(STEPS, dtype=tf.int64), model=model).write(str(best / f"ckpt-{STEPS}"))
  source = model_source.resolve_source(str(best))
  assert (source.train_dir, source.model_name, source.num_classes, source.image_size, source.preprocessing_name) == (
      str(run_copy), "cifarnet", 3, 32, "inception")
  assert source.class_names == tuple(test_split["names"])
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    built, step = model_source.build_model(source)
    assert keras.mixed_precision.global_policy().name == "mixed_float16"  # restored
  finally:
    keras.mixed_precision.set_global_policy(previous)
  assert step == STEPS and built.layers[1].compute_dtype == "float32"
  logits = built(test_split["images"], training=False).numpy()
  np.testing.assert_allclose(logits, test_split["logits"], rtol=1e-5, atol=1e-6)
  # --use_ema reads the trainer's moving averages (a different set of weights).
  ema_model, _ = model_source.build_model(model_source.resolve_source(run), use_ema=True)
  ema = tiny_data.checkpoint_weights(reference.checkpoint, ema=True)
  for v in ema_model.weights:
    np.testing.assert_array_equal(v.numpy(), ema[v.path])


def test_a_bad_flag_is_a_one_line_error(run, tmp_path):
  proc = subprocess.run([sys.executable, SCRIPT, f"--checkpoint_path={run}", f"--output_dir={tmp_path / 'x'}",
                         "--quantize=float32,int4"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                        check=False)
  assert proc.returncode == 2
  assert "error: --quantize=float32,int4: unknown int4" in proc.stderr
  assert "float32,float16,dynamic,int8" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------------------------------
# The comparison report's export columns


def _fake_run(root, name, export_summary=None):
  path = os.path.join(root, name)
  os.makedirs(path)
  with open(os.path.join(path, run_dir.RUN_INFO), "w") as f:
    json.dump({"model_name": name, "dataset_name": "flowers", "image_size": 224, "final_step": 10}, f)
  if export_summary is not None:
    os.makedirs(os.path.join(path, run_dir.EXPORT_SUBDIR))
    with open(os.path.join(path, run_dir.EXPORT_SUBDIR, run_dir.EXPORT_REPORT), "w") as f:
      json.dump({"summary": export_summary}, f)
  return path


def test_compare_shows_export_columns_only_when_a_run_has_an_export(tmp_path):
  plain = _fake_run(tmp_path, "resnet")
  without = compare.write_report([plain], str(tmp_path / "report1"))
  assert "SavedModel MB" not in without.markdown_table
  with open(without.paths["results.csv"]) as f:
    assert f.readline().strip().split(",") == [key for key, *_ in compare.COLUMNS]

  exported_run = _fake_run(tmp_path, "mobilenet", {"verify_split": "test", "saved_model_mb": 17.04,
                                                    "tflite_int8_mb": 4.31, "int8_top1": 0.8125,
                                                    "cpu_latency_ms": 12.345})
  on_validation = _fake_run(tmp_path, "xception", {"verify_split": "validation", "saved_model_mb": 90.0,
                                                    "int8_top1": 0.5, "cpu_latency_ms": 80.0})
  report = compare.write_report([plain, exported_run, on_validation], str(tmp_path / "report2"))
  with open(report.paths["results.csv"]) as f:
    lines = f.read().splitlines()
  assert lines[0].endswith(",saved_model_mb,tflite_int8_mb,int8_test_top1,cpu_latency_ms")
  assert lines[1].endswith(",,,,")
  assert lines[2].endswith(",17.04,4.31,0.8125,12.35")
  assert lines[3].endswith(",90.00,,,80.00")  # an int8 top-1 measured on validation is not a test figure
  row = " ".join(report.markdown_table.splitlines()[3].split())
  assert row.endswith("| 17.0 | 4.3 | 81.25 | 12.3 |")
