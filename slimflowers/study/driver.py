r"""The study in one command: train several nets under the same settings, evaluate, compare.

    python -m slimflowers.study --dataset_name=flowers102 --dataset_dir=data/flowers102 \
        --models=alexnet,inception_v3,resnet50,mobilenet,xception,inception_resnet \
        --runs_dir=runs/flowers102 --num_epochs=30 --optimizer=momentum --learning_rate=0.01
    # [study] ===== model 1/6: alexnet =====
    # [alexnet train] 12:00:05 step 10/960 | loss 4.61 | ...   [alexnet eval] 12:01:00 eval validation step 100: ...
    # ... then the comparison table and the report's paths.

For each model in turn (or --parallel_models at once), in `RUNS/<model>/` (the trainer's --train_dir), two
processes:
  1. train_image_classifier.py;
  2. beside it, a continuous eval_image_classifier.py on the validation split
     (`RUNS/<model>/eval_validation/`, with best/), which, after the final step and when
     the dataset has a test split, also evaluates the final checkpoint (`eval_test/`) and
     the best-by-validation one (`eval_test_best/`) on it, in the same process;
then writes the comparison into `RUNS/report/` (python -m slimflowers.compare) and prints the table.
Every child's own lines are streamed with a `[model train]` / `[model eval]` prefix; everything
they print goes to `RUNS/<model>/train.log` or `eval.log` (TensorFlow's detail only there, unless
--verbosity=1).

Flags: the study's own (below), plus every flag of train_image_classifier.py
(slimflowers/train/flags.py), parsed here -- so a typo fails now, not after the
first model -- and forwarded to every trainer as given. --dataset_name and
--dataset_dir go to trainers and evaluators; --train_dir and --model_name are
the study's to set (--runs_dir, --models). Evaluators get --eval_image_size and
--preprocessing_name from the training flags, and --use_ema when
--moving_average_decay is set.

Re-running the same command skips what is done (a finished run whose final step
is evaluated, on every split) and resumes the rest: the trainer continues from its
last checkpoint, the evaluator skips steps already in results.jsonl. A finished run
is trained further when --max_number_of_steps asks for more steps. Ctrl-C (or
SIGTERM) stops the running trainer and evaluator (SIGTERM to their process
groups, SIGKILL after a grace period) and exits with 128 + the signal number;
a failing child stops the study with an error naming the model, the command,
its log file and its last lines.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

import concurrent.futures  # pylint: disable=g-import-not-at-top,wrong-import-order
import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-order
import os
import shlex
import sys
import time

from absl import app
from absl import flags

from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.study import children as children_lib
from slimflowers.study.seeds import base_seed, run_name, run_path, seed_flags  # pylint: disable=unused-import

REPO_DIR = cli.REPO_DIR
TRAIN_SCRIPT = os.path.join(REPO_DIR, "train_image_classifier.py")
EVAL_SCRIPT = os.path.join(REPO_DIR, "eval_image_classifier.py")
EXPORT_SCRIPT = os.path.join(REPO_DIR, "export_image_classifier.py")
EXPORT_QUANTIZE = ("float32", "int8")  # the study's export: the reference TFLite and the phone one
# Trainer flags the study sets itself, per model.
STUDY_OWNED_TRAIN_FLAGS = {"train_dir": "--runs_dir", "model_name": "--models"}

FLAGS = flags.FLAGS


class StudyError(errors.UserError, RuntimeError):
  """The study cannot start (bad flags, no usable dataset): refused, like any expected error (exit 2)."""


class StudyFailed(StudyError):
  """The study ran and a model's run did not complete; the message says which model, and what to look at."""
  exit_code = 1


# ----------------------------------------------------------------------------- Run state

def training_done(train_dir, max_number_of_steps=None):
  """True when run_info.json says finished (at the requested number of steps, when one is given, or stopped early)."""
  info = run_dir.read_run_info(train_dir)
  if not info.get("finished") or info.get("final_step") is None:
    return False
  return max_number_of_steps is None or int(info["final_step"]) >= max_number_of_steps or bool(
      info.get("stopped_early"))


def check_unchanged(cfg, model, train_dir, seed_index=0):
  """Before a finished run is skipped: the lines the trainer would warn with; StudyError with the trainer's own
  line when this study's flags would change the run (slimflowers/train/run_record.py)."""
  from slimflowers.train import run_record  # pylint: disable=g-import-not-at-top
  info = run_dir.read_run_info(train_dir)
  if run_record.is_legacy(info):
    return [run_record.legacy_warning(train_dir)]
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top  (TensorFlow: when it runs)
  try:
    return train.preflight(train_flags.parse(train_command(cfg, model, seed_index)[2:])).warnings
  except errors.UserError as e:
    raise StudyError(f"{model}: {e}") from e


def final_step(train_dir):
  return int(run_dir.read_run_info(train_dir)["final_step"])


def missing_evaluations(train_dir, test_split):
  """What the evaluator still owes a finished run: ["validation step 600", "test best (step 400)", ...]."""
  last = final_step(train_dir)
  val_dir = run_dir.eval_dir(train_dir, "validation")
  missing = [] if last in run_dir.evaluated_steps(val_dir) else [f"validation step {last}"]
  if test_split:
    if last not in run_dir.evaluated_steps(run_dir.eval_dir(train_dir, test_split)):
      missing.append(f"{test_split} step {last}")
    best = run_dir.read_best(val_dir).get("step")
    if best is not None and int(best) not in run_dir.evaluated_steps(run_dir.eval_dir(train_dir, test_split, True)):
      missing.append(f"{test_split} best (step {best})")
  return missing


def dataset_splits(dataset_name, dataset_dir):
  """The converted dataset's split names; StudyError (saying what to run) when it has no validation split."""
  import datasets  # pylint: disable=g-import-not-at-top  (TensorFlow; only when the study runs)
  from datasets import records  # pylint: disable=g-import-not-at-top
  try:
    datasets.get_split(dataset_name, "validation", dataset_dir)  # the evaluators need it; its errors teach
  except (ValueError, FileNotFoundError) as e:
    raise StudyError(f"The study needs a converted dataset with a validation split: {e}") from e
  return set(records.read_metadata(dataset_dir)["splits"])


# ----------------------------------------------------------------------------- Commands

@dataclasses.dataclass
class StudyConfig:
  """What every model of the study shares."""
  dataset_name: str
  dataset_dir: str
  runs_dir: str
  train_flags: list = dataclasses.field(default_factory=list)  # "--name=value" strings, forwarded as given
  eval_batch_size: int = 50
  eval_interval_secs: int = 30
  eval_timeout_secs: int = 24 * 3600
  eval_num_gpus: int = None
  eval_image_size: int = None      # default: the net's (like the trainer)
  preprocessing_name: str = None   # default: the net's
  use_ema: bool = False
  max_number_of_steps: int = None  # when given: a finished run with fewer steps is trained further
  export: bool = False             # export each model's best-validation checkpoint into RUN/export/
  parallel_models: int = 1         # models trained at once, the CPU cores shared out (child_env)
  early_stopping_patience: int = 0  # evaluations without improvement before the evaluator stops the trainer
  early_stopping_min_delta: float = 0.0
  seeds: int = 1                   # runs per model, seeds --seed, --seed + 1, ... (run_name)
  python: str = sys.executable
  command: str = None              # the command that started the study (the report's reproduction section)


def child_env(cfg):
  """Extra environment of every child: with models side by side, each process gets its share of the cores as
  TensorFlow's intra-op threads (TF_NUM_INTRAOP_THREADS), so they do not oversubscribe the CPU."""
  if cfg.parallel_models <= 1:
    return None
  return {"TF_NUM_INTRAOP_THREADS": str(max(1, (os.cpu_count() or 1) // cfg.parallel_models))}


def train_command(cfg, model, seed_index=0):
  """The trainer's command; `--checkpoint_path=imagenet` reaches only the models that have ImageNet weights."""
  from slimflowers.core import pretrained  # pylint: disable=g-import-not-at-top  (imports the nets)
  own = [f for f in cfg.train_flags if f != f"--checkpoint_path={pretrained.IMAGENET}" or pretrained.has_weights(model)]
  return [cfg.python, TRAIN_SCRIPT, f"--train_dir={run_path(cfg, model, seed_index)}",
          f"--dataset_name={cfg.dataset_name}", f"--dataset_dir={cfg.dataset_dir}", f"--model_name={model}", *own,
          *seed_flags(cfg, seed_index)]


def eval_command(cfg, model, *, test_split=None, seed_index=0):
  """The continuous validation evaluator of `model`'s run; with `test_split`, it also evaluates the final splits."""
  train_dir = run_path(cfg, model, seed_index)
  cmd = [cfg.python, EVAL_SCRIPT, f"--checkpoint_path={train_dir}", f"--dataset_name={cfg.dataset_name}",
         f"--dataset_dir={cfg.dataset_dir}", "--dataset_split_name=validation", f"--model_name={model}",
         f"--batch_size={cfg.eval_batch_size}", "--continuous", f"--eval_interval_secs={cfg.eval_interval_secs}",
         f"--eval_timeout_secs={cfg.eval_timeout_secs}"]
  if test_split:
    cmd.append(f"--final_eval_splits={test_split}")
  if cfg.eval_image_size:
    cmd.append(f"--eval_image_size={cfg.eval_image_size}")
  if cfg.preprocessing_name:
    cmd.append(f"--preprocessing_name={cfg.preprocessing_name}")
  if cfg.use_ema:
    cmd.append("--use_ema")
  if cfg.eval_num_gpus is not None:
    cmd.append(f"--num_gpus={cfg.eval_num_gpus}")
  if cfg.early_stopping_patience:
    cmd += [f"--early_stopping_patience={cfg.early_stopping_patience}",
            f"--early_stopping_min_delta={cfg.early_stopping_min_delta}"]
  return cmd


def export_command(cfg, model, *, verify_split, seed_index=0):
  train_dir = run_path(cfg, model, seed_index)
  cmd = [cfg.python, EXPORT_SCRIPT, f"--checkpoint_path={run_dir.best_dir(run_dir.eval_dir(train_dir, 'validation'))}",
         f"--output_dir={os.path.join(train_dir, run_dir.EXPORT_SUBDIR)}", f"--dataset_dir={cfg.dataset_dir}",
         f"--quantize={','.join(EXPORT_QUANTIZE)}", f"--verify_split={verify_split}"]
  if cfg.use_ema:
    cmd.append("--use_ema")
  return cmd


def exported_step(train_dir):
  """The checkpoint step RUN/export/ holds (from its export_report.json), or None."""
  report = fileio.read_json(os.path.join(train_dir, run_dir.EXPORT_SUBDIR, run_dir.EXPORT_REPORT))
  return report.get("step")


# ----------------------------------------------------------------------------- One model

def run_model(cfg, model, *, has_test, supervisor=None, seed_index=0):
  """Trains and evaluates one model (its `seed_index`-th seed), skipping the parts already done; its train_dir."""
  supervisor = supervisor or children_lib.Supervisor()
  train_dir = run_path(cfg, model, seed_index)
  train_log, eval_log = os.path.join(train_dir, run_dir.TRAIN_LOG), os.path.join(train_dir, run_dir.EVAL_LOG)
  test_split = "test" if has_test else None
  model_name, model = model, run_name(cfg, model, seed_index)  # `model` below: the run's name in every line

  def evaluator():
    return supervisor.start(f"{model} eval", eval_command(cfg, model_name, test_split=test_split,
                                                          seed_index=seed_index), eval_log, env=child_env(cfg))

  if training_done(train_dir, cfg.max_number_of_steps):
    for line in check_unchanged(cfg, model_name, train_dir, seed_index):
      supervisor.say(f"{model}: WARNING: {line}")
    supervisor.say(f"{model}: training already finished at step {final_step(train_dir)} ({train_dir})")
  else:
    supervisor.say(f"{model}: training in {train_dir}, validation evaluator beside it (logs: {train_log}, "
                   f"{eval_log})")
    trainer = supervisor.start(f"{model} train", train_command(cfg, model_name, seed_index), train_log,
                               env=child_env(cfg))
    supervisor.wait(model, [trainer, evaluator()])
    if not training_done(train_dir):
      raise StudyFailed(f"{model}: the trainer exited cleanly but {train_dir}/{run_dir.RUN_INFO} does not say "
                       f"finished.\n  command: {shlex.join(trainer.cmd)}\n  log: {train_log}")
  missing = missing_evaluations(train_dir, test_split)
  if missing:  # e.g. the study was stopped after training: one evaluator process catches up on all of it
    supervisor.say(f"{model}: evaluating {', '.join(missing)}")
    supervisor.wait(model, [evaluator()])
    missing = missing_evaluations(train_dir, test_split)
    if missing:
      raise StudyFailed(f"{model}: the evaluator exited without evaluating {', '.join(missing)}; see {eval_log}.")
  else:
    supervisor.say(f"{model}: every evaluation is done ({train_dir})")
  if cfg.export:
    export_best(cfg, model, train_dir, test_split or "validation", supervisor, model_name=model_name,
                seed_index=seed_index)
  return train_dir


def export_best(cfg, model, train_dir, verify_split, supervisor, *, model_name=None, seed_index=0):
  """Exports the best-validation checkpoint into RUN/export/ (once per best step). A failed check is reported,
  not fatal: the files and export_report.json are kept and the report shows the numbers."""
  best = run_dir.read_best(run_dir.eval_dir(train_dir, "validation")).get("step")
  if best is None:
    supervisor.say(f"{model}: no best checkpoint to export")
    return
  if exported_step(train_dir) == best:
    supervisor.say(f"{model}: best checkpoint (step {best}) already exported ({train_dir}/{run_dir.EXPORT_SUBDIR})")
    return
  supervisor.say(f"{model}: exporting the best checkpoint (step {best}) and checking it on {verify_split}")
  log = os.path.join(train_dir, run_dir.EVAL_LOG)
  try:
    command = export_command(cfg, model_name or model, verify_split=verify_split, seed_index=seed_index)
    supervisor.wait(model, [supervisor.start(f"{model} export", command, log, env=child_env(cfg))])
  except children_lib.ChildFailed as e:
    if e.returncode != 1 or exported_step(train_dir) != best:
      raise
    supervisor.say(f"{model}: WARNING: the export failed a check (see the table above and {log}); files kept")


# ----------------------------------------------------------------------------- The study

def run_study(cfg, models, *, out=None, supervisor=None):
  """Trains and evaluates every model (one at a time, or cfg.parallel_models side by side), then writes and prints
  the report; returns compare.Report.

  Raises StudyError (or children.ChildFailed) when a child fails, children.Interrupted on
  SIGINT/SIGTERM (children stopped).
  """
  from slimflowers.study import compare  # pylint: disable=g-import-not-at-top  (matplotlib; only at the end)
  supervisor = supervisor or children_lib.Supervisor(out=out)
  fileio.check_directory_flag("runs_dir", cfg.runs_dir)  # before anything runs or is created
  if not models:
    raise StudyError("--models is empty. Pass a comma-separated list, e.g. --models=cifarnet,mobilenet_v1_025 "
                     "(python -m nets lists the names).")
  if len(set(models)) != len(models):
    raise StudyError(f"--models={','.join(models)} names a model twice; each model gets one run directory.")
  import nets  # pylint: disable=g-import-not-at-top  (Keras; only when the study runs)
  for model in models:
    try:
      nets.get_spec(model)
    except ValueError as e:
      raise StudyError(f"--models: {e}") from e
  from slimflowers.core import pretrained  # pylint: disable=g-import-not-at-top
  if f"--checkpoint_path={pretrained.IMAGENET}" in cfg.train_flags:
    without = [m for m in models if not pretrained.has_weights(m)]
    supervisor.say(f"--checkpoint_path=imagenet: fine-tuning {len(models) - len(without)} model(s) from ImageNet"
                   + (f"; no ImageNet weights for {', '.join(without)}: trained from random init" if without else ""))
  has_test = "test" in dataset_splits(cfg.dataset_name, cfg.dataset_dir)
  fileio.makedirs(cfg.runs_dir)
  # One run per model and seed, scheduled alike, the first seeds of every model first (a study stopped early has one
  # run of each). What this invocation trains (the report says so): the runs not finished before it.
  units = [(model, i) for i in range(max(1, cfg.seeds)) for model in models]
  to_train = [run_path(cfg, m, i) for m, i in units if not training_done(run_path(cfg, m, i), cfg.max_number_of_steps)]
  seeds = f", {cfg.seeds} seeds each ({len(units)} runs)" if cfg.seeds > 1 else ""
  supervisor.say(f"{len(models)} model(s): {', '.join(models)}{seeds}; dataset {cfg.dataset_name} "
                 f"({cfg.dataset_dir}, {'with' if has_test else 'no'} test split); runs in {cfg.runs_dir}")
  def one(i, unit):
    model, seed_index = unit
    name = run_name(cfg, model, seed_index)
    supervisor.say(f"===== {'model' if cfg.seeds <= 1 else 'run'} {i}/{len(units)}: {name} =====")
    start = time.monotonic()
    extra = {"seed_index": seed_index} if seed_index else {}
    train_dir = run_model(cfg, model, has_test=has_test, supervisor=supervisor, **extra)
    supervisor.say(f"{name}: done in {time.monotonic() - start:.0f}s")
    return train_dir

  with children_lib.StopOnSignals(supervisor.say):
    try:
      if cfg.parallel_models <= 1:
        run_dirs = [one(i, unit) for i, unit in enumerate(units, 1)]
      else:
        run_dirs = _side_by_side(cfg, units, one, supervisor)
    finally:
      supervisor.stop()  # whatever an interrupt or error left running
  # The report covers every run in runs_dir, not only this invocation's --models.
  others = [p for p in compare.runs_in(cfg.runs_dir) if fileio.abspath(p) not in {fileio.abspath(d) for d in run_dirs}]
  report = compare.write_report(run_dirs + others, os.path.join(cfg.runs_dir, run_dir.REPORT_SUBDIR),
                                trained=to_train, commands=reproduction(cfg, units, has_test))
  compare.print_report(report, supervisor.out)
  supervisor.say(f"TensorBoard (all runs, train and eval curves, HPARAMS tab): tensorboard --logdir {cfg.runs_dir}")
  return report


def reproduction(cfg, units, has_test):
  """[(what, command)]: the study's command, then each run's trainer and evaluator (the report's last section)."""
  commands = [("the study", cfg.command)] if cfg.command else []
  for model, i in units:
    name = run_name(cfg, model, i)
    test = "test" if has_test else None
    commands.append((f"{name}: training", shlex.join(["python"] + train_command(cfg, model, i)[1:])))
    commands.append((f"{name}: evaluation", shlex.join(["python"] + eval_command(cfg, model, test_split=test,
                                                                                   seed_index=i)[1:])))
  return commands


def _side_by_side(cfg, models, one, supervisor):
  """Runs `one(i, model)` for up to cfg.parallel_models models at once, a thread each; returns their run
  directories in `models` order. The first failure (or an interrupt, raised in this, the main thread) closes
  the supervisor -- every child stopped, none started after -- and is raised once the threads are done."""
  supervisor.say(f"{cfg.parallel_models} models at a time, each process with "
                 f"{child_env(cfg)['TF_NUM_INTRAOP_THREADS']} intra-op thread(s) (--parallel_models)")
  pool = concurrent.futures.ThreadPoolExecutor(cfg.parallel_models, thread_name_prefix="study")
  futures = [pool.submit(one, i, model) for i, model in enumerate(models, 1)]
  try:
    pending = set(futures)
    while pending:  # short waits: SIGINT/SIGTERM raise Interrupted here, in the main thread
      done, pending = concurrent.futures.wait(pending, timeout=0.5, return_when=concurrent.futures.FIRST_EXCEPTION)
      for future in done:
        future.result()  # the first failure
    return [future.result() for future in futures]
  except BaseException:
    for future in futures:
      future.cancel()  # models not started yet
    supervisor.close()  # the others' children stop; their threads end with ChildFailed or Closed, not raised
    raise
  finally:
    pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- Command line

def define_flags():
  """The study's flags plus every trainer flag (parsed here, forwarded to the trainers)."""
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  train_flags.define_flags()
  flags.adopt_module_key_flags(train_flags)  # --help lists the trainer's flags too: the study forwards them
  flags.DEFINE_list("models", None, "Networks to train, in order (python -m nets lists them).")
  flags.DEFINE_string("runs_dir", None, "One run directory per model goes here, plus report/.")
  flags.DEFINE_integer("eval_batch_size", StudyConfig.eval_batch_size, "Evaluation batch size.")
  flags.DEFINE_integer("eval_interval_secs", StudyConfig.eval_interval_secs,
                       "How often the validation evaluator looks for a new checkpoint.")
  flags.DEFINE_integer("eval_timeout_secs", StudyConfig.eval_timeout_secs,
                       "The validation evaluator gives up after this long without a new checkpoint (the study "
                       "stops it anyway when training ends or fails).")
  flags.DEFINE_integer("eval_num_gpus", None, "GPUs for the evaluators (default: all visible; 0: CPU).")
  flags.DEFINE_bool("export", False, "Export each model's best-validation checkpoint into RUN/export/ (SavedModel, "
                    "TFLite float32 and int8, each checked on the test split) and add its sizes, int8 accuracy and "
                    "latency to the report.")
  flags.DEFINE_integer("parallel_models", 1, "Train this many models at once, the CPU cores shared out among "
                       "their processes. For CPU-only runs of small nets, which use about one core each: 2 on a 2-core "
                       "machine halves the study's time (BENCHMARKS.md, The demo). The report's speed columns are then "
                       "measured on a shared machine (3-13 % lower): compare speeds from one-at-a-time runs. On GPUs "
                       "keep 1: models would share the accelerator.", lower_bound=1)
  flags.DEFINE_integer("early_stopping_patience", 0, "Each validation evaluator stops its trainer after this many "
                       "evaluations without an improvement above --early_stopping_min_delta (README, 'Early "
                       "stopping'). 0: never.", lower_bound=0)
  flags.DEFINE_float("early_stopping_min_delta", 0.0, "The validation accuracy gain that counts as an improvement.",
                     lower_bound=0)
  flags.DEFINE_integer("seeds", 1, "Train each model this many times, with seeds --seed, --seed+1, ... (data "
                       "order, initialization, augmentation): one run directory each, RUNS/<model> for the first, "
                       "RUNS/<model>-seed<S> for the others. The report adds the mean, standard deviation, min and "
                       "max across seeds and compares the models seed by seed and on their means. A re-run with "
                       "more seeds trains only the missing ones.", lower_bound=1)
  flags.mark_flags_as_required(["models", "runs_dir", "dataset_dir"])


def _forwarded_train_flags():
  """The trainer flags given on the command line, as "--name=value" (study-owned ones refused)."""
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  forwarded = []
  for name in train_flags.flag_names():
    flag = FLAGS[name]
    if name in ("dataset_name", "dataset_dir") or not flag.present:
      continue
    if name in STUDY_OWNED_TRAIN_FLAGS:
      raise app.UsageError(f"--{name} is set by the study for each model (from {STUDY_OWNED_TRAIN_FLAGS[name]}); "
                           f"drop --{name}.")
    forwarded.append(flag.serialize())
  return forwarded


def config_from_flags():
  return StudyConfig(
      dataset_name=FLAGS.dataset_name, dataset_dir=FLAGS.dataset_dir, runs_dir=FLAGS.runs_dir,
      train_flags=_forwarded_train_flags(), eval_batch_size=FLAGS.eval_batch_size,
      eval_interval_secs=FLAGS.eval_interval_secs, eval_timeout_secs=FLAGS.eval_timeout_secs,
      eval_num_gpus=FLAGS.eval_num_gpus, eval_image_size=FLAGS.train_image_size,
      preprocessing_name=FLAGS.preprocessing_name, use_ema=bool(FLAGS.moving_average_decay),
      max_number_of_steps=FLAGS.max_number_of_steps, export=FLAGS.export, parallel_models=FLAGS.parallel_models,
      early_stopping_patience=FLAGS.early_stopping_patience, early_stopping_min_delta=FLAGS.early_stopping_min_delta,
      seeds=FLAGS.seeds, command=shlex.join(["python", "-m", "slimflowers.study"] + sys.argv[1:]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: every option is a --flag.")
  cfg = config_from_flags()
  try:
    run_study(cfg, FLAGS.models)
  except children_lib.Interrupted as e:
    print(f"[study] {e}: trainer and evaluator stopped. Run the same command again to resume.", file=sys.stderr)
    sys.exit(128 + e.signum)
