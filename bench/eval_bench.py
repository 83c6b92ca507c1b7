"""Evaluation throughput: our exact evaluator against plain `model.predict`, same net and data, same run.

    .venv/bin/python bench/eval_bench.py                          # small + large net, ~1 min on 2 cores
    .venv/bin/python bench/eval_bench.py --models=cifarnet:100:32 --num_cpu_replicas=2

Prints, per net, images/s of slimflowers.exact_eval.ExactEvaluator (the class
eval_image_classifier.py runs: padded batches, masks, exact counts reduced
across replicas) and of `model.predict` (logits only, no metrics) over the same
in-memory split, and their ratio (target >= 0.9: exactness should cost little).
The split size deliberately does not divide the batch, so the padded last batch
is part of the measurement. Each figure is the best of --repeats timed passes,
alternating between the two methods, after one warm-up pass each (tracing excluded).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import bench_utils  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_list("models", ["cifarnet:100:32:2030", "mobilenet_v1:50:224:230"],
                  "name:batch:image_size:num_examples entries (one small and one large net by default); "
                  "num_examples is the split size, not a multiple of the batch on purpose.")
flags.DEFINE_integer("num_classes", 17, "Classes of the fake split.")
flags.DEFINE_integer("repeats", 3, "Timed passes per method; the best is reported.")
flags.DEFINE_integer("num_cpu_replicas", 0, "Logical CPU replicas for our evaluator (predict uses one device).")
FLAGS = flags.FLAGS


def bench_one(strategy, model_name, batch, size, n):
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  import nets
  from slimflowers.eval import exact as exact_eval
  num_classes = FLAGS.num_classes
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(n, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, num_classes, size=n).astype(np.int32)
  pad = -(-n // batch) * batch - n
  padded = tf.data.Dataset.from_tensor_slices({
      "image": np.concatenate([images, np.zeros((pad, size, size, 3), np.float32)]),
      "label": np.concatenate([labels, np.zeros([pad], np.int32)]),
      "mask": np.concatenate([np.ones([n], np.float32), np.zeros([pad], np.float32)]),
  }).batch(batch).cache()
  plain = tf.data.Dataset.from_tensor_slices(images).batch(batch).cache()

  with strategy.scope():
    model = nets.get_model(model_name, num_classes)
  evaluator = exact_eval.ExactEvaluator(model, padded, strategy, num_classes=num_classes, global_batch_size=batch,
                                        expected_examples=n)
  ours, predict = bench_utils.best_rates([evaluator.evaluate, lambda: model.predict(plain, verbose=0)], n,
                                         FLAGS.repeats)
  result = evaluator.evaluate()
  agree = float(np.mean(model.predict(plain, verbose=0).argmax(axis=1) == labels))
  keras.backend.clear_session()
  return ours, predict, result["accuracy"], agree


def main(argv):
  del argv
  from slimflowers.core import devices  # pylint: disable=g-import-not-at-top
  strategy = devices.create_strategy(num_gpus=0, num_cpu_replicas=FLAGS.num_cpu_replicas)
  print(f"{'model':<16}{'batch':>6}{'size':>6}{'examples':>9}{'replicas':>9}{'ours img/s':>12}"
        f"{'predict img/s':>15}{'ratio':>7}")
  for entry in FLAGS.models:
    name, batch, size, n = entry.split(":")
    ours, predict, accuracy, agree = bench_one(strategy, name, int(batch), int(size), int(n))
    if abs(accuracy - agree) > 1e-9:
      raise RuntimeError(f"{name}: evaluator accuracy {accuracy} != predict accuracy {agree}")
    print(f"{name:<16}{batch:>6}{size:>6}{n:>9}{strategy.num_replicas_in_sync:>9}{ours:>12.1f}{predict:>15.1f}"
          f"{ours / predict:>7.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
