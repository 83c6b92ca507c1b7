r"""Evaluates checkpoints exactly, once or continuously beside a running trainer.

    python eval_image_classifier.py --checkpoint_path=runs/cifarnet --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --continuous --num_gpus=0 --final_eval_splits=test
    # 12:00:01 eval validation step 200: accuracy=0.8314 top_5_accuracy=1.0000 loss=0.4712 ... num_examples=350
    # ... one line per checkpoint; after the final step of the finished run, the final and the best
    # checkpoint on the test split; then it exits.

Without --continuous it evaluates one checkpoint (a prefix, or the latest in a
directory). Results go to --eval_dir (default TRAIN_DIR/eval_SPLIT): TensorBoard
summaries at the checkpoint's step, results.jsonl, and best/ (a copy of the best
checkpoint by accuracy); a final evaluation (this one checkpoint, the run's final step with
--continuous, the --final_eval_splits) also writes predictions.csv, one row per example. Model, image size and
preprocessing default to the run's. See slimflowers/eval/program.py.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from slimflowers.core import devices
from slimflowers.core import run_dir
from slimflowers.eval import program as evaluate
from slimflowers.train import flags as train_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_path", None, "A checkpoint prefix (TRAIN_DIR/ckpt-1000) or a train_dir.")
flags.DEFINE_string("eval_dir", None, "Where results go; default TRAIN_DIR/eval_SPLIT.")
train_flags.define_dataset_flags(split_name="validation", split_help="Split to evaluate.")
flags.DEFINE_string("model_name", None, "Network the checkpoint was trained with; default: the run's "
                    f"(TRAIN_DIR/{run_dir.RUN_INFO}).")
flags.DEFINE_string("preprocessing_name", None, "A preprocessing_factory name (slimflowers/data/preprocessing.py); "
                    "default: the run's, else the net's.")
flags.DEFINE_integer("eval_image_size", None, "Evaluation image size; default: the run's training size, "
                     "else the net's.")
flags.DEFINE_integer("batch_size", evaluate.BATCH_SIZE, "Global evaluation batch (a multiple of the replica count).")
flags.DEFINE_bool("use_ema", False, "Evaluate the moving averages (training used --moving_average_decay).")
flags.DEFINE_bool("continuous", False, "Watch --checkpoint_path (a train_dir) and evaluate each new checkpoint.")
flags.DEFINE_float("eval_interval_secs", evaluate.EVAL_INTERVAL_SECS,
                   "Seconds between looks for a new checkpoint (--continuous).")
flags.DEFINE_float("eval_timeout_secs", evaluate.EVAL_TIMEOUT_SECS,
                   "Stop after this many seconds without a new checkpoint.")
flags.DEFINE_list("final_eval_splits", [], "After the final checkpoint of the run: evaluate it and the best "
                  "checkpoint on these splits too (into eval_SPLIT/ and eval_SPLIT_best/), in this process.")
flags.DEFINE_integer("early_stopping_patience", 0, "With --continuous: after this many evaluations without an "
                     "improvement of validation accuracy by more than --early_stopping_min_delta, ask the trainer to "
                     "stop (TRAIN_DIR/stop_request.json; README, 'Early stopping'). 0: never.", lower_bound=0)
flags.DEFINE_float("early_stopping_min_delta", 0.0, "The accuracy gain that counts as an improvement.", lower_bound=0)
flags.DEFINE_enum("tta", "none", ["none", "flip", "crops"], "Test-time augmentation: logits averaged over the "
                  "image and its mirror (flip, 2 views) or the centre and four corner crops, each mirrored (crops, "
                  "10 views); results go to eval_SPLIT_tta_MODE/ (slimflowers/eval/tta.py).")
flags.DEFINE_integer("keep_top_n", 0, "Keep copies of the N best checkpoints by accuracy in EVAL_DIR/top/ (the "
                     "trainer rotates its own away), for python -m slimflowers.averaging. 0: best/ only.",
                     lower_bound=0)
flags.DEFINE_bool("write_predictions", True, "A final evaluation (one checkpoint; with --continuous the run's "
                  "final step; the --final_eval_splits) also writes EVAL_DIR/predictions.csv: one row per example "
                  "(file name, label, prediction, probabilities, top-5), for the report's intervals and paired tests.")
flags.DEFINE_integer("print_predictions", 0, "Print true and predicted labels of the first N examples.")
train_flags.define_device_flags(num_gpus_note=", to leave GPUs to training")
flags.adopt_module_key_flags(train_flags)  # --help lists the dataset and device flags with the rest
flags.mark_flag_as_required("checkpoint_path")
flags.mark_flag_as_required("dataset_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  # First TF work of the process: logical CPU devices and GPU memory growth are set here.
  strategy = devices.create_strategy(num_gpus=FLAGS.num_gpus, num_cpu_replicas=FLAGS.num_cpu_replicas)
  evaluate.run(
      strategy,
      checkpoint_path=FLAGS.checkpoint_path, eval_dir=FLAGS.eval_dir,
      dataset_name=FLAGS.dataset_name, dataset_dir=FLAGS.dataset_dir,
      dataset_split_name=FLAGS.dataset_split_name, model_name=FLAGS.model_name,
      preprocessing_name=FLAGS.preprocessing_name, eval_image_size=FLAGS.eval_image_size,
      batch_size=FLAGS.batch_size, use_ema=FLAGS.use_ema, continuous=FLAGS.continuous,
      eval_interval_secs=FLAGS.eval_interval_secs, eval_timeout_secs=FLAGS.eval_timeout_secs,
      print_predictions=FLAGS.print_predictions, final_eval_splits=FLAGS.final_eval_splits,
      early_stopping_patience=FLAGS.early_stopping_patience, early_stopping_min_delta=FLAGS.early_stopping_min_delta,
      tta=FLAGS.tta, keep_top_n=FLAGS.keep_top_n, write_predictions=FLAGS.write_predictions)


if __name__ == "__main__":
  cli.run(main)
