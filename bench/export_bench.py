"""Exported-model speed: the SavedModel against `keras.Model.predict`, same net and images, same run; TFLite latency.

    .venv/bin/python bench/export_bench.py                               # cifarnet + mobilenet_v1, ~2 min on 2 cores
    .venv/bin/python bench/export_bench.py --models=mobilenet_v1_050:160 --quantize=float32,int8

Per net (random weights: speed does not depend on them), prints images/s of
- `keras.Model.predict` on the preprocessed images (the baseline),
- the exported SavedModel's `serving_preprocessed` on the same images (reloaded with
  tf.saved_model.load, in this process, same threads as predict) and its ratio to predict,
- the SavedModel's `serving_default` on the JPEG files themselves (decoding and preprocessing
  inside the graph, as a server runs it) and its ratio to predict;
then, per TFLite variant (slimflowers/deploy/export.py's converter; int8 calibrated on the same images),
ms/image at batch 1 and images/s batched, on ONE thread (verification.time_model, the code the export
report uses). Each SavedModel/predict figure is the best of --repeats timed passes, alternating
between the methods, after one warm-up pass each (tracing excluded). The logits of both SavedModel
signatures are checked against predict's first, so the three measure the same computation.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import bench_utils  # pylint: disable=g-import-not-at-top,wrong-import-position

from slimflowers.core import cli  # pylint: disable=g-import-not-at-top,g-bad-import-order  (quiets TensorFlow)

from absl import flags  # pylint: disable=g-import-not-at-top

flags.DEFINE_list("models", ["cifarnet:32", "mobilenet_v1:224"], "name:image_size entries.")
flags.DEFINE_integer("num_images", 96, "Images per timed pass (JPEG photos of --photo_size px, synthetic).")
flags.DEFINE_integer("photo_size", 320, "Side of the synthetic JPEG photos (decoded by serving_default).")
flags.DEFINE_integer("batch_size", 32, "Batch for predict, the SavedModel and batched TFLite.")
flags.DEFINE_integer("num_classes", 102, "Classes of the head.")
flags.DEFINE_integer("repeats", 3, "Timed passes per method; the best is reported.")
flags.DEFINE_list("quantize", ["float32", "float16", "dynamic", "int8"], "TFLite variants to time.")
FLAGS = flags.FLAGS


def _photos(n, size):
  """Smooth random colour photos as JPEG bytes (noise alone would make unusually slow JPEGs)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  small = tf.random.stateless_uniform([n, size // 16, size // 16, 3], seed=[0, 1], maxval=255.0)
  images = tf.cast(tf.image.resize(small, [size, size], method="bicubic"), tf.uint8)
  return [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]


def bench_one(name, size):
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.data import preprocessing  # pylint: disable=g-import-not-at-top
  from slimflowers.deploy import export  # pylint: disable=g-import-not-at-top
  from slimflowers.deploy import serving
  from slimflowers.deploy import tflite
  from slimflowers.deploy import verification
  spec = nets.get_spec(name)
  batch = FLAGS.batch_size
  jpegs = _photos(FLAGS.num_images, FLAGS.photo_size)
  images = np.stack([preprocessing.preprocess_eval(tf.constant(j), size, spec.preprocessing).numpy() for j in jpegs])
  model = nets.get_model(name, FLAGS.num_classes)
  model(images[:1], training=False)
  module = serving.ServingModule(model, class_names=[str(i) for i in range(FLAGS.num_classes)], image_size=size,
                                preprocessing_name=spec.preprocessing, top_k=5)
  with tempfile.TemporaryDirectory(prefix="export_bench_") as tmp:
    serving.save_saved_model(module, os.path.join(tmp, "saved_model"))
    loaded = tf.saved_model.load(os.path.join(tmp, "saved_model"))
    preprocessed = loaded.signatures["serving_preprocessed"]
    from_bytes = loaded.signatures["serving_default"]
    batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    jpeg_batches = [tf.constant(jpegs[i:i + batch]) for i in range(0, len(jpegs), batch)]

    def run_predict():
      return model.predict(images, batch_size=batch, verbose=0)

    def run_preprocessed():
      return np.concatenate([preprocessed(preprocessed_images=tf.constant(b))["logits"].numpy() for b in batches])

    def run_default():
      return np.concatenate([from_bytes(image_bytes=b)["logits"].numpy() for b in jpeg_batches])

    expected = run_predict()
    for label, fn in (("serving_preprocessed", run_preprocessed), ("serving_default", run_default)):
      difference = np.abs(fn() - expected).max() / max(np.abs(expected).max(), 1e-12)
      if difference > 1e-4:
        raise RuntimeError(f"{name}: {label} logits differ from predict's by {difference:.2e} (relative)")
    rates = bench_utils.best_rates([run_predict, run_preprocessed, run_default], len(images), FLAGS.repeats)

  tflite = {}
  calibration = lambda: iter(images)
  for quantization in FLAGS.quantize:
    lite = tflite.TFLiteModel(model_content=tflite.convert_tflite(module, quantization, calibration), num_threads=1)
    tflite[quantization] = verification.time_model(lite.logits, images, batch)
  keras.backend.clear_session()
  return rates, tflite


def main(argv):
  del argv
  print(f"{'model':<16}{'size':>5}{'predict img/s':>15}{'SavedModel preproc img/s':>26}{'ratio':>7}"
        f"{'SavedModel JPEG img/s':>23}{'ratio':>7}", flush=True)
  tflite_rows = []
  for entry in FLAGS.models:
    name, size = entry.split(":")
    (predict, preprocessed, default), tflite = bench_one(name, int(size))
    print(f"{name:<16}{size:>5}{predict:>15.1f}{preprocessed:>26.1f}{preprocessed / predict:>7.2f}"
          f"{default:>23.1f}{default / predict:>7.2f}", flush=True)
    tflite_rows += [(name, size, q, latency, rate) for q, (latency, rate) in tflite.items()]
  print(f"\nTFLite, one thread:\n{'model':<16}{'size':>5}{'variant':>9}{'ms/image (batch 1)':>20}"
        f"{'img/s (batch ' + str(FLAGS.batch_size) + ')':>18}")
  for name, size, quantization, latency, rate in tflite_rows:
    print(f"{name:<16}{size:>5}{quantization:>9}{latency:>20.2f}{rate:>18.1f}")


if __name__ == "__main__":
  cli.run(main)
