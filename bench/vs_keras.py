r"""The race: our scripts against a tutorial-style Keras script, same images, same steps, same run.

    .venv/bin/python bench/vs_keras.py        # the full race: 2,500 steps each (9 min on 2 quiet cores)
    .venv/bin/python bench/vs_keras.py --steps=150 --num_images=500 --save_interval_steps=50 --target=0.25 \
        --dataset_dir=/tmp/vs_keras_small    # a check that everything runs: 2-3 min, 2 busy cores
    # ... both sides' own lines ([ours train], [ours eval], [keras]), then the table and the ratios:
    # side                           steps  evals        to 90 % (step)      total   best val acc (step)
    # ours (conversion included)      2500     13          98.5 s (900)    232.3 s         98.2 % (1900)
    #   ... training only                                        90.4 s    224.2 s
    # keras fit                       2520     40        272.3 s (2331)    292.1 s         90.4 % (2331)
    # time to 90 %, ours / keras: 0.36 (target <= 0.40: met)     (2026-11-28, idle 2-core machine)

Why: issue 15 asks whether the whole workflow (convert, train, evaluate beside training)
reaches a useful accuracy sooner than what a Keras user writes from the TF "image
classification" tutorial. Both sides run as their users run them, as fresh processes
started here, one after the other (never at the same time: they would share the cores).

The images: a folder of class sub-folders (--image_folder; default the synthetic_flowers
images, generated once into --dataset_dir/flower_photos, untimed). Both sides see EXACTLY
the same train and validation images: our converter splits the folder (--validation_size,
its seed 0), and the Keras side's `train/` and `validation/` folders are then built (as
symbolic links) from the converted records themselves -- each record's `image/class/label`
and `image/filename` lead back to one source file (an error if a name is ambiguous) -- so a
file the converter skipped is in neither side. The Keras user thus gets two folders instead
of `validation_split=0.2`; everything else is the tutorial's.

Our side: download_and_convert_data.py --dataset_name=folder (with --resize_to when given), then
train_image_classifier.py with the demo's recipe (slimflowers/study/demo.py: mobilenet_v1_050, adam
0.005 cosine to 1e-4, batch-norm momentum 0.9, a checkpoint every --save_interval_steps) and
beside it a continuous eval_image_classifier.py (--eval_interval_secs=5): the study's very two
commands (slimflowers/study/driver.py). The Keras side: `keras_tutorial` below --
image_dataset_from_directory, cache/shuffle/prefetch, RandomFlip/RandomRotation/RandomZoom,
MobileNet(alpha=0.5) behind Rescaling(1/127.5, offset=-1), Adam(1e-3), fit(epochs=ceil(steps /
steps_per_epoch)) with validation every epoch -- run as `python bench/vs_keras.py
--keras_child=CONFIG`. Each side keeps its own recipe on purpose (that is what is raced): ours
the net's TF-Slim preprocessing (random crop, flip, colour; central crop for evaluation) and
batch-norm momentum 0.9, the tutorial's a resize of the whole image, its three layers and
Keras's batch-norm momentum 0.99 (whose moving statistics lag in short runs: the tutorial's
validation accuracy can sit at one class for the first epochs).

What each timer includes (all wall clock, time.time(), the clock of results.jsonl):
- ours: the conversion (its process from start to exit: interpreter, TensorFlow import, the
  worker pool, re-encoding, shards), plus, from just before the trainer is started: both
  processes' start-up, compilation, training, checkpoints and the evaluator's passes. Time to
  target = conversion + (`wall_time` of the first results.jsonl row with accuracy >= --target,
  written when that evaluation finished) - trainer start. Total = conversion + (the trainer and
  the evaluator both exited, i.e. the final step evaluated) - trainer start.
- keras: from just before its process is started: interpreter and TensorFlow import, file
  listing, JPEG decoding (during the first epoch, then cached), model building, fit and its
  per-epoch validation. Time to target = the end of the first epoch (its validation included)
  with val_accuracy >= --target. Total = its process exited.
- neither: generating the images; the bench reading the records and linking the Keras folders
  (the harness's replacement for validation_split).
The headline ratio counts our conversion (the Keras side's data loading is inside its timer
and cannot be taken out); the ratio without it is printed too, since a user converts once and
trains many times. The sides also validate at different points: ours every checkpoint
(--save_interval_steps, evaluated beside training, while the trainer keeps going), Keras every
epoch (ceil(train images / batch) steps, in the training process).

Everything lands in a fresh --work_dir/race-YYYYmmdd-HHMMSS/ (nothing is ever deleted):
ours/data (records), ours/mobilenet_v1_050 (train_dir, train.log, eval.log, results.jsonl),
keras/data (the linked folders), keras/history.jsonl, keras/keras.log, and race.json with the
figures printed at the end.
"""
import dataclasses
import json
import math
import os
import shlex
import sys
import time

from absl import app
from absl import flags

from slimflowers.core import run_dir

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

MODEL_NAME = "mobilenet_v1_050"   # ours; the Keras side's MobileNet(alpha=0.5) is the same net
KERAS_ALPHA = 0.5
KERAS_LEARNING_RATE = 1e-3        # the tutorial's Adam default
KERAS_SHUFFLE_BUFFER = 1000       # the tutorial's
POLL_SECS = 0.05                  # how often a finished child is noticed (its share of the timers)

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 2500, "Training steps of each side (Keras: whole epochs, at least this many).")
flags.DEFINE_string("dataset_dir", "/tmp/slimflowers_vs_keras/synthetic_flowers",
                    "Where the synthetic_flowers images are generated (once) when --image_folder is not given; "
                    "they land in DIR/flower_photos/<class>/*.jpg.")
flags.DEFINE_integer("num_images", 2500, "How many synthetic_flowers images to generate (first run only).")
flags.DEFINE_string("image_folder", None, "Race on this folder of class sub-folders instead "
                    "(default: DATASET_DIR/flower_photos).")
flags.DEFINE_string("work_dir", "/tmp/slimflowers_vs_keras/races", "Each race goes into a new sub-folder here.")
flags.DEFINE_integer("image_size", 64, "Training and evaluation image size of both sides.")
flags.DEFINE_integer("batch_size", 32, "Training batch size of both sides.")
flags.DEFINE_float("target", 0.9, "Validation accuracy whose first arrival is timed.")
flags.DEFINE_float("validation_size", 0.2, "Validation images (fraction or count), as the tutorial's "
                   "validation_split=0.2.")
flags.DEFINE_integer("resize_to", None, "Our conversion's --resize_to (stored shorter side, px); default: images "
                     "kept as they are. The Keras side always reads the original files.")
flags.DEFINE_integer("save_interval_steps", None,
                     "Our checkpoint (= validation) period; default the demo's SAVE_INTERVAL_STEPS.")
flags.DEFINE_float("eval_interval_secs", 5, "How often our evaluator looks for a new checkpoint.")
flags.DEFINE_integer("seed", 0, "Seed of both sides (our data order and augmentation, Keras's shuffling and init).")
flags.DEFINE_bool("skip_keras", False, "Run only our side (debugging).")
flags.DEFINE_bool("skip_ours", False, "Run only the Keras side (debugging; the conversion still defines the split).")
flags.DEFINE_string("keras_child", None, "Internal: run the Keras tutorial script from this config.json and exit.")


class RaceError(Exception):
  """The race cannot be run as asked; the message says why and what to do."""


# ----------------------------------------------------------------------------- The Keras side (a user's script)

def keras_tutorial(cfg):
  """The TF "image classification" tutorial with MobileNet(alpha=0.5): what a Keras user runs. Own process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  from keras import layers  # pylint: disable=g-import-not-at-top

  size, batch = cfg["image_size"], cfg["batch_size"]
  keras.utils.set_random_seed(cfg["seed"])
  train_ds = keras.utils.image_dataset_from_directory(cfg["train_dir"], image_size=(size, size), batch_size=batch,
                                                      seed=cfg["seed"])
  val_ds = keras.utils.image_dataset_from_directory(cfg["validation_dir"], image_size=(size, size),
                                                    batch_size=batch, shuffle=False)
  # Harness, not tutorial: the bench linked these folders from our records; Keras must see all of them.
  found = {"train": len(train_ds.file_paths), "validation": len(val_ds.file_paths)}
  if found != cfg["num_images"] or train_ds.class_names != cfg["class_names"]:
    raise SystemExit(f"Keras found {found} images of classes {train_ds.class_names}; the split has "
                     f"{cfg['num_images']} of {cfg['class_names']}: not the same images (file extensions Keras "
                     "does not read?).")
  num_classes = len(train_ds.class_names)
  steps_per_epoch = math.ceil(found["train"] / batch)

  autotune = tf.data.AUTOTUNE
  train_ds = train_ds.cache().shuffle(KERAS_SHUFFLE_BUFFER).prefetch(buffer_size=autotune)
  val_ds = val_ds.cache().prefetch(buffer_size=autotune)

  data_augmentation = keras.Sequential([
      layers.RandomFlip("horizontal"),
      layers.RandomRotation(0.1),
      layers.RandomZoom(0.1),
  ])
  model = keras.Sequential([
      keras.Input(shape=(size, size, 3)),
      data_augmentation,
      layers.Rescaling(1.0 / 127.5, offset=-1),
      keras.applications.MobileNet(alpha=KERAS_ALPHA, weights=None, input_shape=(size, size, 3),
                                   classes=num_classes),
  ])
  model.compile(optimizer=keras.optimizers.Adam(KERAS_LEARNING_RATE),
                loss=keras.losses.SparseCategoricalCrossentropy(),  # MobileNet ends in a softmax
                metrics=["accuracy"])

  class History(keras.callbacks.Callback):
    """One JSON line per epoch: when it ended (validation included) and its metrics."""

    def on_epoch_end(self, epoch, logs=None):
      row = {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy()), "wall_time": time.time()}
      row.update({k: float(v) for k, v in (logs or {}).items()})
      with open(cfg["history"], "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")

  model.fit(train_ds, validation_data=val_ds, epochs=math.ceil(cfg["steps"] / steps_per_epoch),
            callbacks=[History()], verbose=2)


# ----------------------------------------------------------------------------- Results of one side

@dataclasses.dataclass
class Side:
  """One side's figures; times in seconds from its start (None: target never reached)."""
  name: str
  steps: int = 0
  evals: int = 0
  to_target: float = None
  target_step: int = None
  total: float = None
  best: float = None
  best_step: int = None
  extra: dict = dataclasses.field(default_factory=dict)


def score(name, rows, start, end, target, *, acc_key, offset=0.0):
  """Side figures from evaluation rows ({"step", "wall_time", acc_key}) in the order they were written."""
  side = Side(name=name, evals=len(rows), total=offset + end - start)
  if rows:
    side.steps = max(int(r["step"]) for r in rows)
    best = max(rows, key=lambda r: (r[acc_key], -int(r["step"])))
    side.best, side.best_step = float(best[acc_key]), int(best["step"])
    hits = [r for r in rows if r[acc_key] >= target]
    if hits:
      first = min(hits, key=lambda r: r["wall_time"])
      side.to_target, side.target_step = offset + first["wall_time"] - start, int(first["step"])
  return side


def read_jsonl(path):
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- Data: the folder and the split

def image_folder(supervisor):
  """The folder to race on; the synthetic_flowers images are generated into --dataset_dir first (untimed)."""
  if FLAGS.image_folder:
    if not os.path.isdir(FLAGS.image_folder):
      raise RaceError(f"--image_folder={FLAGS.image_folder} is not a directory (expected one sub-folder of images "
                      "per class).")
    return os.path.abspath(FLAGS.image_folder)
  folder = os.path.join(os.path.abspath(FLAGS.dataset_dir), "flower_photos")
  if os.path.isdir(folder):
    print(f"[race] images: reusing {folder} (generated earlier; --num_images applies to a new --dataset_dir only)")
    return folder
  print(f"[race] images: generating {FLAGS.num_images} synthetic_flowers images into {folder} (not timed)")
  cmd = [sys.executable, os.path.join(REPO_DIR, "download_and_convert_data.py"), "--dataset_name=synthetic_flowers",
         f"--dataset_dir={FLAGS.dataset_dir}", f"--num_images={FLAGS.num_images}"]
  supervisor.wait("images", [supervisor.start("generate", cmd, os.path.join(FLAGS.dataset_dir, "generate.log"))])
  return folder


def convert(supervisor, folder, data_dir, log):
  """Our conversion of `folder` into `data_dir`; returns its wall seconds (process start to exit)."""
  cmd = [sys.executable, os.path.join(REPO_DIR, "download_and_convert_data.py"), "--dataset_name=folder",
         f"--source={folder}", f"--dataset_dir={data_dir}", f"--validation_size={FLAGS.validation_size}"]
  if FLAGS.resize_to:
    cmd.append(f"--resize_to={FLAGS.resize_to}")
  print(f"[race] ours: {shlex.join(cmd)}")
  start = time.time()
  supervisor.wait("conversion", [supervisor.start("ours convert", cmd, log)], poll_secs=POLL_SECS)
  return time.time() - start


def link_keras_folders(folder, data_dir, keras_data):
  """keras_data/{train,validation}/<class>/<file> -> the source files of our converted splits; returns counts.

  Each record says (label, base name); the converter's own listing of `folder`
  (datasets.dataset_utils.list_class_folders) says which file that is.
  """
  import datasets  # pylint: disable=g-import-not-at-top  (TensorFlow: only now)
  from datasets import dataset_utils  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class_names, examples = dataset_utils.list_class_folders(folder)
  by_name, class_folders = {}, [None] * len(class_names)
  for path, label in examples:
    by_name.setdefault((label, dataset_utils.record_name(path).rsplit("/", 1)[-1]), []).append(path)
    class_folders[label] = os.path.relpath(path, folder).split(os.sep)[0]
  empty = [n for n, f in zip(class_names, class_folders) if f is None]
  if empty:
    raise RaceError(f"Class folder(s) {', '.join(empty)} in {folder} hold no files; Keras would not count them as "
                    "classes, so the labels of the two sides would differ. Remove them, or race on another folder.")
  counts = {}
  for split_name in ("train", "validation"):
    split = datasets.get_split("folder", split_name, data_dir)
    for class_folder in class_folders:  # every class in both splits, so Keras numbers the classes as we do
      os.makedirs(os.path.join(keras_data, split_name, class_folder), exist_ok=True)
    n = 0
    for serialized in tf.data.TFRecordDataset(split.filenames):
      features = records.parse_example(serialized, keys=["image/class/label", "image/filename"])
      label, name = int(features["image/class/label"]), features["image/filename"].numpy().decode("utf-8")
      paths = by_name.get((label, name), [])
      if len(paths) != 1:
        raise RaceError(f"Record {name!r} (class {split.labels_to_names[label]}) matches {len(paths)} files in "
                        f"{folder}{': ' + ', '.join(paths) if paths else ''}. The bench needs base names unique "
                        "within each class folder; rename the files, or race on another folder.")
      os.symlink(paths[0], os.path.join(keras_data, split_name, class_folders[label], os.path.basename(paths[0])))
      n += 1
    if n != split.num_samples:
      raise RaceError(f"{data_dir}: read {n} {split_name} records, {records.DATASET_JSON} says {split.num_samples}.")
    counts[split_name] = n
  return counts, class_folders


# ----------------------------------------------------------------------------- The two sides

def run_ours(supervisor, race_dir, data_dir, conversion_secs):
  """train_image_classifier.py + a continuous eval_image_classifier.py beside it, the study's very commands."""
  from slimflowers.core import run_dir  # pylint: disable=g-import-not-at-top
  from slimflowers.study import demo  # pylint: disable=g-import-not-at-top
  from slimflowers.study import driver as study  # pylint: disable=g-import-not-at-top
  mine = {"--train_image_size": FLAGS.image_size, "--max_number_of_steps": FLAGS.steps,
          "--batch_size": FLAGS.batch_size, "--seed": FLAGS.seed,
          "--save_interval_steps": FLAGS.save_interval_steps or demo.SAVE_INTERVAL_STEPS}
  recipe = [f for f in demo.train_flags() if f.split("=", 1)[0] not in mine]  # the demo's recipe, ours on top
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=data_dir, runs_dir=os.path.join(race_dir, "ours"),
                          train_flags=recipe + [f"{k}={v}" for k, v in mine.items()],
                          eval_batch_size=demo.EVAL_BATCH_SIZE, eval_interval_secs=FLAGS.eval_interval_secs,
                          eval_image_size=FLAGS.image_size, max_number_of_steps=FLAGS.steps)
  train_dir = os.path.join(cfg.runs_dir, MODEL_NAME)
  train_cmd, eval_cmd = study.train_command(cfg, MODEL_NAME), study.eval_command(cfg, MODEL_NAME)
  print(f"[race] ours: {shlex.join(train_cmd)}\n[race] ours: {shlex.join(eval_cmd)}", flush=True)
  start = time.time()
  trainer = supervisor.start("ours train", train_cmd, os.path.join(train_dir, run_dir.TRAIN_LOG))
  evaluator = supervisor.start("ours eval", eval_cmd, os.path.join(train_dir, run_dir.EVAL_LOG))
  supervisor.wait("ours", [trainer, evaluator], poll_secs=POLL_SECS)
  end = time.time()
  rows = run_dir.read_results(run_dir.eval_dir(train_dir, "validation"))
  side = score("ours (conversion included)", rows, start, end, FLAGS.target, acc_key="accuracy",
               offset=conversion_secs)
  info = run_dir.read_run_info(train_dir)
  side.steps = int(info.get("final_step", side.steps))
  side.extra = {"conversion_secs": conversion_secs, "train_dir": train_dir,
                "train_images_per_sec": info.get("images_per_sec")}
  return side


def run_keras(supervisor, race_dir, counts, class_folders):
  keras_dir = os.path.join(race_dir, "keras")
  cfg = {"train_dir": os.path.join(keras_dir, "data", "train"),
         "validation_dir": os.path.join(keras_dir, "data", "validation"), "num_images": counts,
         "class_names": class_folders, "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
         "steps": FLAGS.steps, "seed": FLAGS.seed, "history": os.path.join(keras_dir, "history.jsonl")}
  config_path = os.path.join(keras_dir, "config.json")
  with open(config_path, "w", encoding="utf-8") as f:
    json.dump(cfg, f, indent=1)
  cmd = [sys.executable, os.path.abspath(__file__), f"--keras_child={config_path}"]
  print(f"[race] keras: {shlex.join(cmd)}", flush=True)
  start = time.time()
  supervisor.wait("keras", [supervisor.start("keras", cmd, os.path.join(keras_dir, "keras.log"))],
                  poll_secs=POLL_SECS)
  end = time.time()
  side = score("keras fit", read_jsonl(cfg["history"]), start, end, FLAGS.target, acc_key="val_accuracy")
  side.extra = {"history": cfg["history"]}
  return side


# ----------------------------------------------------------------------------- Report

def _secs(value, step=None):
  if value is None:
    return "not reached"
  return f"{value:.1f} s" + (f" ({step})" if step is not None else "")


def print_table(sides, target):
  pct = f"{100 * target:g} %"
  print(f"\n{'side':<30}{'steps':>6}{'evals':>7}{'to ' + pct + ' (step)':>22}{'total':>11}"
        f"{'best val acc (step)':>22}")
  for s in sides:
    best = f"{100 * s.best:.1f} % ({s.best_step})" if s.best is not None else "-"
    print(f"{s.name:<30}{s.steps:>6}{s.evals:>7}{_secs(s.to_target, s.target_step):>22}{_secs(s.total):>11}"
          f"{best:>22}")
    conv = s.extra.get("conversion_secs")
    if conv is not None:  # ours: the same figures without the conversion
      to_target = None if s.to_target is None else s.to_target - conv
      print(f"{'  ... training only':<30}{'':>13}{_secs(to_target):>22}{_secs(s.total - conv):>11}")


def ratio_lines(ours, keras, target):
  """The ratios ours / keras: time to target (headline, target <= 0.4), without our conversion, total."""
  lines = []
  conv = ours.extra["conversion_secs"]
  if ours.to_target is not None and keras.to_target is not None:
    r = ours.to_target / keras.to_target
    lines.append(f"time to {100 * target:g} %, ours / keras: {r:.2f} (target <= 0.40: "
                 f"{'met' if r <= 0.4 else 'NOT met'})")
    lines.append(f"  without our conversion ({conv:.1f} s, done once per dataset): "
                 f"{(ours.to_target - conv) / keras.to_target:.2f}")
  else:
    missing = " and ".join(s.name for s in (ours, keras) if s.to_target is None)
    lines.append(f"time to {100 * target:g} %: no ratio, {missing} never reached it")
  lines.append(f"total wall time, ours / keras: {ours.total / keras.total:.2f} "
               f"(without our conversion {(ours.total - conv) / keras.total:.2f})")
  return lines


# ----------------------------------------------------------------------------- The race

def race():
  from slimflowers.study import children  # pylint: disable=g-import-not-at-top  (imports cli: TensorFlow stays quiet)

  if FLAGS.skip_ours and FLAGS.skip_keras:
    raise app.UsageError("--skip_ours and --skip_keras together leave nothing to race; drop one.")
  if FLAGS.steps < 1 or FLAGS.batch_size < 1 or FLAGS.image_size < 32:
    raise app.UsageError(f"--steps={FLAGS.steps} and --batch_size={FLAGS.batch_size} must be >= 1, --image_size="
                         f"{FLAGS.image_size} >= 32 (keras.applications.MobileNet's minimum).")
  supervisor = children.Supervisor(out=sys.stdout)
  folder = image_folder(supervisor)
  race_dir = os.path.join(os.path.abspath(FLAGS.work_dir), time.strftime("race-%Y%m%d-%H%M%S"))
  os.makedirs(race_dir)  # new: a second race in the same second fails here rather than mixing runs
  print(f"[race] {folder} -> {race_dir}; {FLAGS.steps} steps each, batch {FLAGS.batch_size}, "
        f"{FLAGS.image_size} px, target {100 * FLAGS.target:g} % validation accuracy", flush=True)

  data_dir = os.path.join(race_dir, "ours", "data")
  conversion_secs = convert(supervisor, folder, data_dir, os.path.join(race_dir, "ours", "convert.log"))
  counts, class_folders = link_keras_folders(folder, data_dir, os.path.join(race_dir, "keras", "data"))
  print(f"[race] split (the same images on both sides): train {counts['train']}, validation "
        f"{counts['validation']}; classes {', '.join(class_folders)}", flush=True)

  sides = []
  if not FLAGS.skip_ours:
    sides.append(run_ours(supervisor, race_dir, data_dir, conversion_secs))
  if not FLAGS.skip_keras:
    sides.append(run_keras(supervisor, race_dir, counts, class_folders))

  print_table(sides, FLAGS.target)
  lines = ratio_lines(*sides, FLAGS.target) if len(sides) == 2 else []
  print("\n".join(lines))
  if sides and sides[0].extra.get("train_images_per_sec"):
    print(f"(ours: conversion {conversion_secs:.1f} s; trainer {sides[0].extra['train_images_per_sec']:.0f} img/s "
          f"compile- and checkpoint-free, from {run_dir.RUN_INFO})")
  summary = {"flags": {k: FLAGS[k].value for k in ("steps", "image_size", "batch_size", "target", "validation_size",
                                                   "resize_to", "save_interval_steps", "eval_interval_secs",
                                                   "seed")},
             "image_folder": folder, "split": counts, "conversion_secs": conversion_secs,
             "sides": [dataclasses.asdict(s) for s in sides], "ratios": lines}
  with open(os.path.join(race_dir, "race.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  print(f"[race] figures: {os.path.join(race_dir, 'race.json')}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: every option is a --flag.")
  if FLAGS.keras_child:
    with open(FLAGS.keras_child, encoding="utf-8") as f:
      keras_tutorial(json.load(f))
    return
  from slimflowers.core import errors  # pylint: disable=g-import-not-at-top
  from slimflowers.study import children  # pylint: disable=g-import-not-at-top
  try:
    children.exit_on_interrupt(race, "race", "both sides stopped.")
  except (RaceError, errors.UserError) as e:
    print(f"vs_keras.py: error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
