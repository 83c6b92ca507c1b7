"""Batch-norm statistics in short runs: the nets' momentum, momentum 0.9, and PreciseBN, on two small folders.

    .venv/bin/python bench/precise_bn_bench.py --work_dir=/tmp/precise_bn_bench     # every net with BN, hours
    .venv/bin/python bench/precise_bn_bench.py --work_dir=/tmp/pbn --models=mobilenet_v1_025 --folders=digits

For every registered net with BatchNormalization (python -m nets; those without are skipped and listed) and
two folders -- `digits`, scikit-learn's 1,797 real 8x8 handwritten digits (load_digits) written as a folder
of PNGs per class, and `synthetic_flowers` (1,500 generated images stored at 96 px) -- each converted by
download_and_convert_data.py --dataset_name=folder / synthetic_flowers, it trains the net twice with the
real trainer (slimflowers.train.run, in a child process per case, every flag at its default but the model,
the image size -- at or near the net's minimum --, the batch and the steps, and --precise_bn_batches=0):
  - at the net's own batch-norm momentum (0.99; mobilenet_v2 0.999), and
  - at --batch_norm_momentum=0.9 (what the demo used to set by hand),
and evaluates each final checkpoint on the validation split twice: with the moving averages training left
("EMA"), and after PreciseBN over --precise_bn_batches batches (train_flags.PRECISE_BN_BATCHES, the trainer's
default; slimflowers/train/precise_bn.py, with the trainer's own batches: train.precise_bn_dataset_fn) -- the
statistics every checkpoint of a default run holds. It also times PreciseBN (a second call, traced already)
against the training step (run_info's compile-free s/step). Momentum changes no weight (training normalizes
with the batch's own statistics), so the two PreciseBN columns agree up to the order of floating-point sums.

Prints a Markdown table (BENCHMARKS.md, "Batch-norm statistics") and writes WORK_DIR/results.json; a case
already in WORK_DIR/cases/ is not run again.

    .venv/bin/python bench/precise_bn_bench.py --work_dir=/tmp/precise_bn_bench --sweep=mobilenet_v1_025:digits

chooses the defaults: on one case's checkpoint, PreciseBN over N = 2 ... 200 batches, each from three seeds,
with the training preprocessing (what the trainer uses) and with the evaluation preprocessing of shuffled
training images.
"""
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slimflowers.core import cli  # pylint: disable=g-bad-import-order,wrong-import-position  (quiets TensorFlow)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from datasets import records  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("work_dir", "/tmp/precise_bn_bench", "Data, runs and results go here.")
flags.DEFINE_list("models", [], "Nets to run (default: every registered net with batch norm).")
flags.DEFINE_list("folders", ["digits", "synthetic_flowers"], "Folders to run on.")
flags.DEFINE_string("case", None, "Internal: run one case MODEL:FOLDER in this process.")
flags.DEFINE_string("sweep", None, "MODEL:FOLDER: instead of the table, how PreciseBN's accuracy depends on the "
                    "number of batches and on the preprocessing of its batches (training or evaluation), on that "
                    "case's checkpoint at the net's momentum (run the case first).")
FLAGS = flags.FLAGS

MOMENTA = (None, 0.9)   # None: the net's own
# (image size, batch, steps): at or near each net's minimum size, batches and steps a 2-core CPU can afford.
SETTINGS = {"alexnet": (195, 16, 200), "inception_resnet_v2": (75, 16, 200), "inception_v3": (75, 16, 200),
            "xception": (71, 16, 200), "resnet_v1_101": (32, 16, 300), "resnet_v1_50": (32, 32, 300)}
DEFAULT_SETTING = (32, 32, 400)  # the MobileNets
SYNTHETIC_IMAGES = 1500


def make_folders(work_dir):
  """The two converted datasets (made once): {folder: (dataset_name, dataset_dir)}."""
  data = os.path.join(work_dir, "data")
  out = {"digits": ("folder", os.path.join(data, "digits")),
         "synthetic_flowers": ("synthetic_flowers", os.path.join(data, "synthetic_flowers"))}
  convert = [sys.executable, os.path.join(REPO, "download_and_convert_data.py")]
  if not os.path.isfile(os.path.join(out["digits"][1], records.DATASET_JSON)):
    source = os.path.join(data, "digits_png")
    _write_digits(source)
    subprocess.run(convert + ["--dataset_name=folder", f"--source={source}", f"--dataset_dir={out['digits'][1]}",
                              "--validation_size=0.2"], check=True)
  if not os.path.isfile(os.path.join(out["synthetic_flowers"][1], records.DATASET_JSON)):
    subprocess.run(convert + ["--dataset_name=synthetic_flowers", f"--dataset_dir={out['synthetic_flowers'][1]}",
                              f"--num_images={SYNTHETIC_IMAGES}", "--resize_to=96"], check=True)
  return out


def _write_digits(root):
  """scikit-learn's load_digits (1,797 8x8 images, 16 grey levels) as root/<digit>/NNNN.png."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  for i, (image, label) in enumerate(zip(digits.images, digits.target)):
    os.makedirs(os.path.join(root, str(label)), exist_ok=True)
    pixels = np.clip(image * 255.0 / 16.0, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "L").convert("RGB").save(os.path.join(root, str(label), f"{i:04d}.png"))


def nets_with_batch_norm():
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.train import precise_bn  # pylint: disable=g-import-not-at-top
  with_bn, without = [], []
  for name in nets.list_models():
    (with_bn if precise_bn.batch_norm_layers(nets.get_model(name, 10)) else without).append(name)
  return with_bn, without


def run_case(model_name, folder, work_dir):
  """Trains and evaluates one (net, folder) as the module doc says; returns its result dict."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.data import input_pipeline
  from slimflowers.eval import exact as exact_eval  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags
  from slimflowers.train import precise_bn
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  dataset_name, dataset_dir = make_folders(work_dir)[folder]
  size, batch, steps = SETTINGS.get(model_name, DEFAULT_SETTING)
  strategy = tf.distribute.get_strategy()
  result = {"model": model_name, "folder": folder, "image_size": size, "batch_size": batch, "steps": steps,
            "precise_bn_batches": train_flags.PRECISE_BN_BATCHES}
  for momentum in MOMENTA:
    key = "net" if momentum is None else f"{momentum:g}"
    train_dir = os.path.join(work_dir, "runs", f"{model_name}_{folder}_m{key}")
    cfg = train_flags.config(train_dir=train_dir, dataset_name=dataset_name, dataset_dir=dataset_dir,
                             model_name=model_name, train_image_size=size, batch_size=batch,
                             max_number_of_steps=steps, batch_norm_momentum=momentum, precise_bn_batches=0,
                             save_interval_secs=0, log_every_n_steps=50)
    start = time.time()
    info = train.run(cfg)
    cfg = train.resolve_config(cfg)
    split = datasets.get_split(dataset_name, "train", dataset_dir)
    val = datasets.get_split(dataset_name, "validation", dataset_dir)
    model = nets.get_model(model_name, val.num_classes, **train_flags.model_overrides(cfg))
    model(tf.zeros([1, size, size, 3]))
    evaluator = exact_eval.ExactEvaluator(
        model, input_pipeline.eval_dataset(val, batch_size=50, image_size=size,
                                           preprocessing_name=cfg.preprocessing_name),
        strategy, num_classes=val.num_classes, global_batch_size=50, expected_examples=val.num_samples)
    prefix = tf.train.latest_checkpoint(train_dir)
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    momenta = {layer.momentum for layer in precise_bn.batch_norm_layers(model)}
    ema = evaluator.evaluate()["accuracy"]
    estimator = precise_bn.Estimator(strategy, [model], train.precise_bn_dataset_fn(cfg, split),
                                     train_flags.PRECISE_BN_BATCHES)
    estimator()
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    secs = estimator()  # traced already: what each checkpoint of a run costs
    precise = evaluator.evaluate()["accuracy"]
    result[key] = {"momentum": sorted(momenta), "ema_accuracy": ema, "precise_bn_accuracy": precise,
                   "precise_bn_secs": secs, "sec_per_step": info["sec_per_step"],
                   "train_secs": time.time() - start, "val_examples": val.num_samples}
    print(f"{model_name} {folder} momentum {key}: EMA {100 * ema:.1f} %, PreciseBN {100 * precise:.1f} % "
          f"({secs:.2f} s = {secs / info['sec_per_step']:.1f} training steps)", flush=True)
  return result


SWEEP_BATCHES = (2, 5, 10, 20, 50, 100, 200)
SWEEP_SEEDS = (1, 2, 3)


def run_sweep(model_name, folder, work_dir):
  """Validation accuracy of PreciseBN by number of batches and preprocessing; returns the Markdown lines."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.data import input_pipeline
  from slimflowers.data import preprocessing  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import exact as exact_eval  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags
  from slimflowers.train import precise_bn
  from slimflowers.train import program as train
  dataset_name, dataset_dir = make_folders(work_dir)[folder]
  size, batch, steps = SETTINGS.get(model_name, DEFAULT_SETTING)
  train_dir = os.path.join(work_dir, "runs", f"{model_name}_{folder}_mnet")
  cfg = train.resolve_config(train_flags.config(
      train_dir=train_dir, dataset_name=dataset_name, dataset_dir=dataset_dir, model_name=model_name,
      train_image_size=size, batch_size=batch, max_number_of_steps=steps, precise_bn_batches=0))
  split = datasets.get_split(dataset_name, "train", dataset_dir)
  val = datasets.get_split(dataset_name, "validation", dataset_dir)
  strategy = tf.distribute.get_strategy()
  model = nets.get_model(model_name, val.num_classes)
  model(tf.zeros([1, size, size, 3]))
  evaluator = exact_eval.ExactEvaluator(
      model, input_pipeline.eval_dataset(val, batch_size=50, image_size=size,
                                         preprocessing_name=cfg.preprocessing_name),
      strategy, num_classes=val.num_classes, global_batch_size=50, expected_examples=val.num_samples)
  prefix = tf.train.latest_checkpoint(train_dir)

  def training_batches(seed):
    return lambda ctx: train.precise_bn_dataset_fn(train_flags.config(**{**vars(cfg), "seed": seed}), split)(ctx)

  def evaluation_batches(seed):
    def dataset_fn(ctx):
      del ctx
      def example(record):
        image_bytes, label = input_pipeline._parse(record)  # pylint: disable=protected-access
        return preprocessing.preprocess_eval(image_bytes, size, cfg.preprocessing_name), label
      records = tf.data.TFRecordDataset(split.filenames).shuffle(split.num_samples, seed=seed).repeat()
      return records.map(example).batch(batch, drop_remainder=True)
    return dataset_fn

  lines = [f"{model_name} on {folder} ({size} px, batch {batch}, {steps} steps), validation accuracy (%), mean "
           f"(min-max) over seeds {SWEEP_SEEDS}:", "",
           "| batches | " + " | ".join(str(n) for n in SWEEP_BATCHES) + " |",
           "|---|" + "--:|" * len(SWEEP_BATCHES)]
  for kind, batches in (("training preprocessing", training_batches),
                        ("evaluation preprocessing", evaluation_batches)):
    cells = []
    for n in SWEEP_BATCHES:
      accuracies = []
      for seed in SWEEP_SEEDS:
        tf.train.Checkpoint(model=model).read(prefix).expect_partial()
        precise_bn.Estimator(strategy, [model], batches(seed), n)()
        accuracies.append(100 * evaluator.evaluate()["accuracy"])
      cells.append(f"{sum(accuracies) / len(accuracies):.1f} ({min(accuracies):.1f}-{max(accuracies):.1f})")
      print(kind, n, cells[-1], flush=True)
    lines.append(f"| {kind} | " + " | ".join(cells) + " |")
  return lines


def table(results, without):
  lines = ["| net | folder | px | batch | steps | EMA, net's momentum | EMA, momentum 0.9 | PreciseBN (default) | "
           "PreciseBN, momentum 0.9 | default - 0.9 EMA | PreciseBN s/ckpt | = training steps |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
  for r in results:
    net, m9 = r["net"], r["0.9"]
    lines.append(f"| {r['model']} | {r['folder']} | {r['image_size']} | {r['batch_size']} | {r['steps']} | "
                 f"{100 * net['ema_accuracy']:.1f} ({'/'.join(f'{m:g}' for m in net['momentum'])}) | "
                 f"{100 * m9['ema_accuracy']:.1f} | {100 * net['precise_bn_accuracy']:.1f} | "
                 f"{100 * m9['precise_bn_accuracy']:.1f} | "
                 f"{100 * (net['precise_bn_accuracy'] - m9['ema_accuracy']):+.1f} | {net['precise_bn_secs']:.2f} | "
                 f"{net['precise_bn_secs'] / net['sec_per_step']:.0f} |")
  lines.append(f"\nNets without batch norm (nothing to re-estimate): {', '.join(without)}.")
  return "\n".join(lines)


def main(argv):
  del argv
  work_dir = FLAGS.work_dir
  if FLAGS.sweep:
    print("\n".join(run_sweep(*FLAGS.sweep.split(":"), work_dir)))
    return
  if FLAGS.case:
    model_name, folder = FLAGS.case.split(":")
    result = run_case(model_name, folder, work_dir)
    os.makedirs(os.path.join(work_dir, "cases"), exist_ok=True)
    with open(os.path.join(work_dir, "cases", f"{model_name}_{folder}.json"), "w") as f:
      json.dump(result, f, indent=1)
    return
  make_folders(work_dir)
  with_bn, without = nets_with_batch_norm()
  models = FLAGS.models or with_bn
  results = []
  for model_name in models:
    for folder in FLAGS.folders:
      path = os.path.join(work_dir, "cases", f"{model_name}_{folder}.json")
      if not os.path.isfile(path):
        print(f"== {model_name} on {folder}", flush=True)
        subprocess.run([sys.executable, os.path.abspath(__file__), f"--work_dir={work_dir}",
                        f"--case={model_name}:{folder}"], check=True)
      with open(path) as f:
        results.append(json.load(f))
  with open(os.path.join(work_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  print(table(results, without))


if __name__ == "__main__":
  cli.run(main)
