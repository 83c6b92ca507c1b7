"""The study in one command: train several nets under the same settings, evaluate, compare.

    python -m slimflowers.study --dataset_name=flowers102 --dataset_dir=data/flowers102 \
        --models=alexnet_v2,inception_v3,resnet_v1_50,mobilenet_v1,xception,inception_resnet_v2 \
        --runs_dir=runs/flowers102 --num_epochs=30 --optimizer=momentum --learning_rate=0.01

For each model in turn, in `RUNS/<model>/` (the trainer's --train_dir):
  1. train_image_classifier.py, with a continuous eval_image_classifier.py on the
     validation split running beside it as a second process (`RUNS/<model>/eval_validation/`);
  2. when the dataset has a test split: the final checkpoint on it (`RUNS/<model>/eval_test/`)
     and the best-by-validation checkpoint (`eval_validation/best/`) on it (`RUNS/<model>/eval_test_best/`;
     when the best is the final checkpoint, its eval_test line is copied there, with `copied_from`);
then writes the comparison into `RUNS/report/` (python -m slimflowers.compare) and prints the table.
Every child's output is streamed with a `[model train]` / `[model eval]` / `[model test]` prefix
and appended to `RUNS/<model>/train.log` or `RUNS/<model>/eval.log`.

Flags: the study's own (below), plus every flag of train_image_classifier.py
(slimflowers/train_flags.py), parsed here -- so a typo fails now, not after the
first model -- and forwarded to every trainer as given. --dataset_name and
--dataset_dir go to trainers and evaluators; --train_dir and --model_name are
the study's to set (--runs_dir, --models). Evaluators get --eval_image_size and
--preprocessing_name from the training flags, and --use_ema when
--moving_average_decay is set.

Re-running the same command skips what is done (a finished run whose final step
is evaluated) and resumes the rest: the trainer continues from its last
checkpoint, the evaluator skips steps already in results.jsonl. A finished run
is trained further when --max_number_of_steps asks for more steps. Ctrl-C (or
SIGTERM) stops the running trainer and evaluator (SIGTERM to their process
groups, SIGKILL after a grace period) and exits with 128 + the signal number;
a failing child stops the study with an error naming the model, the command
and its log file.
"""
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

from slimflowers import compare
from slimflowers import fileio

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO_DIR, "train_image_classifier.py")
EVAL_SCRIPT = os.path.join(REPO_DIR, "eval_image_classifier.py")
REPORT_SUBDIR = "report"
TRAIN_LOG = "train.log"
EVAL_LOG = "eval.log"
# Trainer flags the study sets itself, per model.
STUDY_OWNED_TRAIN_FLAGS = {"train_dir": "--runs_dir", "model_name": "--models"}
STOP_GRACE_SECS = 20

FLAGS = flags.FLAGS


class StudyError(RuntimeError):
  """A child failed or the study cannot go on; the message says which and what to look at."""


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; the children have been (or are being) stopped."""

  def __init__(self, signum):
    super().__init__(f"interrupted by {signal.Signals(signum).name}")
    self.signum = signum


# ----------------------------------------------------------------------------- Console

_print_lock = threading.Lock()
_live_children = set()  # started and not yet reaped: what an interrupt must stop


def say(message, out=None):
  with _print_lock:
    print(f"[study] {message}", file=out or sys.stdout, flush=True)


# ----------------------------------------------------------------------------- Child processes

@dataclasses.dataclass(eq=False)
class Child:
  """One subprocess, its own process group, its output streamed to the console and a log file."""
  label: str
  cmd: list
  log_path: str
  proc: subprocess.Popen = None
  thread: threading.Thread = None

  def describe(self):
    return f"[{self.label}] command: {shlex.join(self.cmd)}\n  log: {self.log_path}"


def _child_env():
  env = dict(os.environ)
  env["PYTHONUNBUFFERED"] = "1"          # lines appear as they are written
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO banner, once per child, is noise here
  return env


def _pump(child, out):
  prefix = f"[{child.label}] "
  with open(child.log_path, "ab") as log:
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(child.cmd)}\n".encode())
    log.flush()
    for raw in iter(child.proc.stdout.readline, b""):
      log.write(raw)
      log.flush()
      line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
      with _print_lock:
        out.write(prefix + line + "\n")
        out.flush()


def start_child(label, cmd, log_path, out=None):
  """Starts `cmd` in its own process group (so Ctrl-C reaches only the study, which stops it cleanly)."""
  out = out or sys.stdout
  os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  child = Child(label=label, cmd=list(cmd), log_path=log_path)
  child.proc = subprocess.Popen(child.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_child_env(), start_new_session=True)
  _live_children.add(child)
  child.thread = threading.Thread(target=_pump, args=(child, out), daemon=True, name=f"pump {label}")
  child.thread.start()
  return child


def stop_children(children, grace_secs=STOP_GRACE_SECS):
  """SIGTERM to each running child's process group, then SIGKILL to whatever is left after `grace_secs`."""
  running = [c for c in children if c.proc is not None and c.proc.poll() is None]
  for child in running:
    say(f"stopping {child.label} (pid {child.proc.pid})")
    try:
      os.killpg(child.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
  deadline = time.monotonic() + grace_secs
  for child in running:
    try:
      child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      say(f"{child.label} ignored SIGTERM for {grace_secs}s; killing it")
      try:
        os.killpg(child.proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      child.proc.wait()
  for child in children:
    if child.thread is not None:
      child.thread.join(timeout=5)
    _live_children.discard(child)


def _failure(model, child):
  return StudyError(f"{model}: {child.label} failed with exit code {child.proc.returncode}.\n"
                    f"  command: {shlex.join(child.cmd)}\n  log: {child.log_path}\n"
                    "Fix the cause and run the same study command again: finished work is kept, the rest resumes.")


def run_children(model, children, poll_secs=0.5):
  """Waits for all children; the first failure stops the others and raises StudyError.

  A child that exits cleanly early (an evaluator that timed out) leaves the
  others running; the caller checks what is missing afterwards.
  """
  try:
    while True:
      alive = False
      for child in children:
        code = child.proc.poll()
        if code is None:
          alive = True
        elif code != 0:
          stop_children(children)
          raise _failure(model, child)
      if not alive:
        break
      time.sleep(poll_secs)
    for child in children:
      child.thread.join(timeout=10)
      _live_children.discard(child)
  finally:
    stop_children(children)  # no-op unless leaving by an exception (Interrupted, StudyError)


# ----------------------------------------------------------------------------- Run state

def _evaluated_steps(eval_dir):
  return {int(r["step"]) for r in compare.read_results_jsonl(os.path.join(eval_dir, compare.RESULTS_JSONL))}


def training_done(train_dir, max_number_of_steps=None):
  """True when run_info.json says finished (at the requested number of steps, when one is given)."""
  info = fileio.read_json(os.path.join(train_dir, compare.RUN_INFO))
  if not info.get("finished") or info.get("final_step") is None:
    return False
  if max_number_of_steps is not None and int(info["final_step"]) < max_number_of_steps:
    return False
  return True


def final_step(train_dir):
  return int(fileio.read_json(os.path.join(train_dir, compare.RUN_INFO))["final_step"])


def best_checkpoint(train_dir):
  """(step, checkpoint dir) of the evaluator's best-by-validation copy, or None."""
  best_dir = os.path.join(train_dir, compare.VAL_SUBDIR, "best")
  best = fileio.read_json(os.path.join(best_dir, "best.json"))
  if "step" not in best:
    return None
  return int(best["step"]), best_dir


def dataset_splits(dataset_name, dataset_dir):
  """The converted dataset's split names; StudyError (saying what to run) when it has no validation split."""
  import datasets  # pylint: disable=g-import-not-at-top  (TensorFlow; only when the study runs)
  from datasets import dataset_utils  # pylint: disable=g-import-not-at-top
  try:
    datasets.get_split(dataset_name, "validation", dataset_dir)  # the evaluators need it; its errors teach
  except (ValueError, FileNotFoundError) as e:
    raise StudyError(f"The study needs a converted dataset with a validation split: {e}") from e
  return set(dataset_utils.read_metadata(dataset_dir)["splits"])


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
  python: str = sys.executable


def train_command(cfg, model):
  return [cfg.python, TRAIN_SCRIPT, f"--train_dir={os.path.join(cfg.runs_dir, model)}",
          f"--dataset_name={cfg.dataset_name}", f"--dataset_dir={cfg.dataset_dir}", f"--model_name={model}",
          *cfg.train_flags]


def eval_command(cfg, model, *, checkpoint_path, eval_dir, split, continuous):
  cmd = [cfg.python, EVAL_SCRIPT, f"--checkpoint_path={checkpoint_path}", f"--eval_dir={eval_dir}",
         f"--dataset_name={cfg.dataset_name}", f"--dataset_dir={cfg.dataset_dir}",
         f"--dataset_split_name={split}", f"--model_name={model}", f"--batch_size={cfg.eval_batch_size}"]
  if cfg.eval_image_size:
    cmd.append(f"--eval_image_size={cfg.eval_image_size}")
  if cfg.preprocessing_name:
    cmd.append(f"--preprocessing_name={cfg.preprocessing_name}")
  if cfg.use_ema:
    cmd.append("--use_ema")
  if cfg.eval_num_gpus is not None:
    cmd.append(f"--num_gpus={cfg.eval_num_gpus}")
  if continuous:
    cmd += ["--continuous", f"--eval_interval_secs={cfg.eval_interval_secs}",
            f"--eval_timeout_secs={cfg.eval_timeout_secs}"]
  return cmd


# ----------------------------------------------------------------------------- One model

def run_model(cfg, model, *, has_test, out=None):
  """Trains and evaluates one model, skipping the parts already done. Returns its train_dir."""
  train_dir = os.path.join(cfg.runs_dir, model)
  val_dir = os.path.join(train_dir, compare.VAL_SUBDIR)
  train_log, eval_log = os.path.join(train_dir, TRAIN_LOG), os.path.join(train_dir, EVAL_LOG)

  def val_evaluator():
    return start_child(f"{model} eval", eval_command(cfg, model, checkpoint_path=train_dir, eval_dir=val_dir,
                                                     split="validation", continuous=True), eval_log, out)

  # 1. Training, with the validation evaluator beside it.
  if training_done(train_dir, cfg.max_number_of_steps):
    say(f"{model}: training already finished at step {final_step(train_dir)} ({train_dir})", out)
  else:
    say(f"{model}: training in {train_dir}, validation evaluator beside it (logs: {train_log}, {eval_log})", out)
    trainer = start_child(f"{model} train", train_command(cfg, model), train_log, out)
    run_children(model, [trainer, val_evaluator()])
    if not training_done(train_dir):
      raise StudyError(f"{model}: the trainer exited cleanly but {train_dir}/run_info.json does not say "
                       f"finished.\n  command: {shlex.join(trainer.cmd)}\n  log: {train_log}")

  last = final_step(train_dir)
  if last not in _evaluated_steps(val_dir):
    say(f"{model}: evaluating the final step {last} on the validation split", out)
    run_children(model, [val_evaluator()])
    if last not in _evaluated_steps(val_dir):
      raise StudyError(f"{model}: the evaluator exited without evaluating the final step {last}; see {eval_log}.")

  # 2. The test split: the final checkpoint, then the best one by validation accuracy.
  if not has_test:
    return train_dir
  test_dir = os.path.join(train_dir, compare.TEST_SUBDIR)
  if last in _evaluated_steps(test_dir):
    say(f"{model}: final checkpoint (step {last}) already evaluated on the test split", out)
  else:
    say(f"{model}: evaluating the final checkpoint (step {last}) on the test split -> {test_dir}", out)
    run_children(model, [start_child(f"{model} test", eval_command(
        cfg, model, checkpoint_path=train_dir, eval_dir=test_dir, split="test", continuous=False), eval_log, out)])
    if last not in _evaluated_steps(test_dir):
      raise StudyError(f"{model}: the test evaluation did not record step {last} in {test_dir}/results.jsonl "
                       f"(is the latest checkpoint in {train_dir} the final one?); see {eval_log}.")
  best = best_checkpoint(train_dir)
  if best is None:
    say(f"{model}: no {val_dir}/best/best.json; skipping the best-checkpoint test evaluation", out)
    return train_dir
  best_step, best_dir = best
  test_best_dir = os.path.join(train_dir, compare.TEST_BEST_SUBDIR)
  if best_step in _evaluated_steps(test_best_dir):
    say(f"{model}: best checkpoint (step {best_step}) already evaluated on the test split", out)
  elif best_step == last and last in _evaluated_steps(test_dir):
    # Same step, same weights: reuse the final checkpoint's test result instead of a second pass over the
    # test split (minutes for a big net on a big test set).
    say(f"{model}: the best checkpoint is the final one (step {last}); its test result is reused", out)
    row = dict(next(r for r in compare.read_results_jsonl(os.path.join(test_dir, compare.RESULTS_JSONL))
                    if int(r["step"]) == last))
    row.update(checkpoint=best_dir, copied_from=os.path.join(test_dir, compare.RESULTS_JSONL))
    fileio.append_line(os.path.join(test_best_dir, compare.RESULTS_JSONL), json.dumps(row, sort_keys=True))
  else:
    say(f"{model}: evaluating the best validation checkpoint (step {best_step}) on the test split "
         f"-> {test_best_dir}", out)
    run_children(model, [start_child(f"{model} test best", eval_command(
        cfg, model, checkpoint_path=best_dir, eval_dir=test_best_dir, split="test", continuous=False),
        eval_log, out)])
    if best_step not in _evaluated_steps(test_best_dir):
      raise StudyError(f"{model}: the test evaluation of {best_dir} did not record step {best_step} in "
                       f"{test_best_dir}/results.jsonl; see {eval_log}.")
  return train_dir


# ----------------------------------------------------------------------------- The study

class StopOnSignals:
  """Turns the first SIGINT/SIGTERM into Interrupted in the main thread; later ones wait for the cleanup."""

  def __init__(self, out):
    self.out, self.previous, self.received = out, {}, None

  def _handle(self, signum, unused_frame):
    if self.received is not None:
      say(f"{signal.Signals(signum).name} again: still stopping the children, please wait", self.out)
      return
    self.received = signum
    raise Interrupted(signum)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self.previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self.previous.items():
      signal.signal(sig, handler)


def run_study(cfg, models, *, out=None):
  """Trains and evaluates every model in turn, then writes and prints the report; returns compare.Report.

  Raises StudyError when a child fails, Interrupted on SIGINT/SIGTERM (children stopped).
  """
  out = out or sys.stdout
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
  has_test = "test" in dataset_splits(cfg.dataset_name, cfg.dataset_dir)
  os.makedirs(cfg.runs_dir, exist_ok=True)
  say(f"{len(models)} model(s): {', '.join(models)}; dataset {cfg.dataset_name} ({cfg.dataset_dir}, "
       f"{'with' if has_test else 'no'} test split); runs in {cfg.runs_dir}", out)
  run_dirs = []
  with StopOnSignals(out):
    try:
      for i, model in enumerate(models, 1):
        say(f"===== model {i}/{len(models)}: {model} =====", out)
        start = time.monotonic()
        run_dirs.append(run_model(cfg, model, has_test=has_test, out=out))
        say(f"{model}: done in {time.monotonic() - start:.0f}s", out)
    finally:
      stop_children(list(_live_children))  # whatever an interrupt or error left running
  report = compare.write_report(run_dirs, os.path.join(cfg.runs_dir, REPORT_SUBDIR))
  compare.print_report(report, out)
  say(f"TensorBoard (all runs, train and eval curves, HPARAMS tab): tensorboard --logdir {cfg.runs_dir}", out)
  return report


# ----------------------------------------------------------------------------- Command line

def define_flags():
  """The study's flags plus every trainer flag (parsed here, forwarded to the trainers)."""
  from slimflowers import train_flags  # pylint: disable=g-import-not-at-top
  train_flags.define_flags()
  flags.DEFINE_list("models", None, "Networks to train, in order (python -m nets lists them).")
  flags.DEFINE_string("runs_dir", None, "One run directory per model goes here, plus report/.")
  flags.DEFINE_integer("eval_batch_size", 50, "Evaluation batch size.")
  flags.DEFINE_integer("eval_interval_secs", 30, "How often the validation evaluator looks for a new checkpoint.")
  flags.DEFINE_integer("eval_timeout_secs", 24 * 3600,
                       "The validation evaluator gives up after this long without a new checkpoint (the study "
                       "stops it anyway when training ends or fails).")
  flags.DEFINE_integer("eval_num_gpus", None, "GPUs for the evaluators (default: all visible; 0: CPU).")
  flags.mark_flags_as_required(["models", "runs_dir", "dataset_dir"])


def _forwarded_train_flags():
  """The trainer flags given on the command line, as "--name=value" (study-owned ones refused)."""
  from slimflowers import train_flags  # pylint: disable=g-import-not-at-top
  forwarded = []
  for flag in FLAGS.get_flags_for_module(train_flags):
    name = flag.name
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
      max_number_of_steps=FLAGS.max_number_of_steps)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: every option is a --flag.")
  cfg = config_from_flags()
  try:
    run_study(cfg, FLAGS.models)
  except StudyError as e:
    say(f"ERROR: {e}", sys.stderr)
    sys.exit(1)
  except Interrupted as e:
    say(f"{e}: trainer and evaluator stopped. Run the same command again to resume.", sys.stderr)
    sys.exit(128 + e.signum)


if __name__ == "__main__":
  define_flags()
  app.run(main)
