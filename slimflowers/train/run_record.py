"""What a train_dir remembers of how it was trained, and what a new command may do with it.

    decision = run_record.decide(train_dir, info, now=train_flags.training_values(cfg), latest_step=400,
                                 max_steps=400)
    decision.action     # "new", "resume", "extend", "complete" or "finished"; a conflict raises BadValue

The record lives in TRAIN_DIR/run_info.json, written by the trainer:
- `train_flags`: every flag that changes the training (train_flags.BOOKKEEPING_FLAGS are the ones that
  do not: logging, checkpoint cadence, devices), resolved, as flags.txt spells the values;
- `flags_txt_sha256`: flags.txt as the trainer wrote it (an edit by hand is noticed, never overwritten);
- `continuations`: each time the run was extended with more steps: at which step, old and new values.

The rules (issue 20, "records never lie"):
- another value of a training flag is refused in one line naming the flags and the two ways forward (a
  new --train_dir, or --max_number_of_steps to extend); nothing is written;
- more steps (--max_number_of_steps or --num_epochs giving a later final step) is a continuation,
  recorded with the old and new values;
- a finished run asked for no more steps trains nothing and writes nothing;
- a train_dir from an older version (no `train_flags`) continues with one warning, a hand-edited
  flags.txt gets one warning (the record in run_info.json is what is checked), a finished run whose
  final checkpoint is gone is refused in one line; in all three, flags.txt stays as it is.
"""
import dataclasses
import hashlib
import os
import time

from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir

NEW, RESUME, EXTEND, COMPLETE, FINISHED = "new", "resume", "extend", "complete", "finished"
# The flags whose change means "train longer"; compared through the final step they resolve to.
STEP_FLAGS = ("max_number_of_steps", "num_epochs")


@dataclasses.dataclass
class Decision:
  """What the trainer does with train_dir. `warnings`: one line each, for the log."""
  action: str
  start_step: int = 0
  warnings: list = dataclasses.field(default_factory=list)
  continuation: dict = None         # for EXTEND: {"at_step", "max_steps": [old, new], "flags": {name: [old, new]}}
  write_flags_txt: bool = True      # False when flags.txt was edited by hand, or the record is an older version's
  legacy: bool = False              # the train_dir has no record of its flags


def flags_txt_sha256(train_dir):
  """The SHA-256 of train_dir/flags.txt, or None when it is missing."""
  try:
    text = fileio.read_text(os.path.join(train_dir, run_dir.FLAGS_TXT))
  except (OSError, fileio._not_found_error()):  # pylint: disable=protected-access
    return None
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def differing_flags(recorded, now):
  """{name: (recorded, now)} of the training flags (not the step flags) whose values differ; a flag one
  side does not know (a newer or older version of the project) is not compared."""
  return {name: (recorded[name], now[name]) for name in sorted(set(recorded) & set(now))
          if name not in STEP_FLAGS and recorded[name] != now[name]}


def _spell(name, value):
  if value is None:
    return f"--{name} unset"
  if value in ("True", "False"):
    return f"--{'' if value == 'True' else 'no'}{name}"
  return f"--{name}={value}"


def refusal(train_dir, diffs, recorded_max_steps):
  """The one line that refuses a command whose training flags differ from the run's."""
  listed = ", ".join(f"{_spell(name, new)} (the run: {_spell(name, old)})" for name, (old, new) in diffs.items())
  flagfile = os.path.join(train_dir, run_dir.FLAGS_TXT)
  return (f"--train_dir={train_dir} was trained with other flags: {listed}. Nothing was changed. For a new run, "
          f"use a new --train_dir; to train this run further, use its own flags (--flagfile={flagfile}) with "
          f"--max_number_of_steps above {recorded_max_steps}.")


def legacy_warning(train_dir):
  return (f"{train_dir} was written by an older version of slimflowers: it has no record of the flags it was trained "
          f"with, so this command's flags are not checked against them ({run_dir.FLAGS_TXT} is left as it is).")


def is_legacy(info):
  """True for a run_info.json written before runs recorded their training flags."""
  return bool(info) and "train_flags" not in info


def decide(train_dir, info, now, *, latest_step, max_steps):
  """What to do with `train_dir` (its run_info `info`, newest checkpoint step `latest_step` or None) for a
  command with training flags `now` (train_flags.training_values) that trains until `max_steps`.

  Returns a Decision; raises errors.BadValue (nothing written) when the command would change the run.
  """
  start = latest_step or 0
  recorded = info.get("train_flags")
  finished = bool(info.get("finished")) and info.get("final_step") is not None
  final = int(info["final_step"]) if finished else None
  if not info and latest_step is None:
    return Decision(NEW)
  warnings = []
  if recorded is None:
    warnings.append(legacy_warning(train_dir))
    if finished and latest_step == final and max_steps <= final:
      return Decision(FINISHED, start, warnings, write_flags_txt=False, legacy=True)
    return Decision(COMPLETE if start >= max_steps else RESUME, start, warnings, write_flags_txt=False, legacy=True)
  diffs = differing_flags(recorded, now)
  recorded_max = int(info.get("max_steps") or 0)
  if not diffs and max_steps < recorded_max:
    diffs = {name: (recorded.get(name), now.get(name)) for name in STEP_FLAGS
             if recorded.get(name) != now.get(name)} or {"max_number_of_steps": (str(recorded_max), str(max_steps))}
  if diffs:
    raise errors.BadValue(refusal(train_dir, diffs, final if finished else recorded_max))
  if finished and latest_step != final:
    newest = f"the newest is ckpt-{latest_step}" if latest_step is not None else "no checkpoint is left"
    raise errors.BadValue(f"{train_dir}/{run_dir.RUN_INFO} says the run finished at step {final}, but its final "
                          f"checkpoint ckpt-{final} is gone ({newest}). Nothing was changed. Put ckpt-{final} back, "
                          "or train a new run in a new --train_dir.")
  write_flags_txt = True
  sha = info.get("flags_txt_sha256")
  if sha is not None and flags_txt_sha256(train_dir) != sha:
    warnings.append(f"{os.path.join(train_dir, run_dir.FLAGS_TXT)} was changed or removed since the trainer wrote "
                    f"it: the run is checked against its record in {run_dir.RUN_INFO}, and {run_dir.FLAGS_TXT} is left "
                    "as it is.")
    write_flags_txt = False
  if latest_step is None:
    return Decision(NEW, 0, warnings, write_flags_txt=write_flags_txt)
  if max_steps > recorded_max:
    continuation = {"at_step": start, "max_steps": [recorded_max, max_steps],
                    "flags": {name: [recorded.get(name), now.get(name)] for name in STEP_FLAGS
                              if recorded.get(name) != now.get(name)},
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return Decision(EXTEND, start, warnings, continuation=continuation, write_flags_txt=write_flags_txt)
  if finished:
    return Decision(FINISHED, start, warnings, write_flags_txt=write_flags_txt)
  return Decision(COMPLETE if start >= max_steps else RESUME, start, warnings, write_flags_txt=write_flags_txt)


def new_record(now, flags_sha256):
  """The run_info.json entries of a new run."""
  return {"train_flags": dict(now), "flags_txt_sha256": flags_sha256, "continuations": []}


def carried_over(info):
  """The entries of an existing run_info.json that a resumed trainer keeps as they are."""
  keys = ("train_flags", "flags_txt_sha256", "continuations", "timed_steps", "timed_secs", "train_wall_secs",
          "precise_bn_secs", "created")
  return {k: info[k] for k in keys if k in info}


def describe_dataset(info):
  """'synthetic_flowers (5 classes, data/synthetic_flowers)' from a run_info.json, or None when it does not say."""
  if not info.get("num_classes"):
    return None
  where = f", {info['dataset_dir']}" if info.get("dataset_dir") else ""
  return f"{info.get('dataset_name', 'a dataset')} ({info['num_classes']} classes{where})"


def check_dataset(train_dir, info, split, *, num_classes=None):
  """Raises errors.BadValue naming both datasets when `split` (datasets.DatasetSplit) is not what the run in
  `train_dir` (its run_info `info`; `num_classes` from a checkpoint when run_info does not say) classifies: another
  number of classes, or other class names."""
  trained = int(info.get("num_classes") or num_classes or 0)
  names = info.get("class_names")
  given = [split.labels_to_names[i] for i in range(split.num_classes)]
  if not trained or (trained == split.num_classes and (not names or list(names) == given)):
    return
  run = describe_dataset(info) or f"{trained} classes"
  other = "other class names" if trained == split.num_classes else f"{split.num_classes} classes"
  fix = (f" Pass the run's dataset: --dataset_name={info['dataset_name']} --dataset_dir={info['dataset_dir']}."
         if info.get("dataset_name") and info.get("dataset_dir") else " Pass the dataset the run was trained on.")
  raise errors.BadValue(f"{train_dir} was trained on {run}, but --dataset_name={split.name} "
                        f"--dataset_dir={split.dataset_dir} holds {split.name} with {other}.{fix}")
