"""Records never lie: what a train_dir remembers, and what a new command may do with it (train/run_record.py)."""
import json
import logging
import os

import pytest

from slimflowers.core import errors
from slimflowers.train import run_record
from slimflowers.train import flags as train_flags
from tests import tiny_data


def _now(**overrides):
  return train_flags.training_values(train_flags.config(**{"max_number_of_steps": 400, **overrides}))


def _info(max_steps=400, finished=True, **flags):
  now = _now(max_number_of_steps=max_steps, **flags)
  info = {"max_steps": max_steps, **run_record.new_record(now, None)}
  if finished:
    info.update(finished=True, final_step=max_steps)
  return info


def test_the_classification_has_one_home_and_names_real_flags():
  names = set(train_flags.flag_names())
  assert set(train_flags.BOOKKEEPING_FLAGS) <= names
  assert set(run_record.STEP_FLAGS) <= names
  now = _now()
  assert "learning_rate" in now and "model_name" in now and "log_every_n_steps" not in now


def test_decisions():
  d = run_record.decide("r", {}, _now(), latest_step=None, max_steps=400)
  assert d.action == run_record.NEW
  d = run_record.decide("r", _info(), _now(log_every_n_steps=5, save_interval_steps=7), latest_step=400,
                        max_steps=400)
  assert d.action == run_record.FINISHED and not d.warnings  # bookkeeping flags may differ
  d = run_record.decide("r", _info(finished=False), _now(), latest_step=200, max_steps=400)
  assert d.action == run_record.RESUME and d.start_step == 200
  d = run_record.decide("r", _info(), _now(max_number_of_steps=600), latest_step=400, max_steps=600)
  assert d.action == run_record.EXTEND
  assert d.continuation["at_step"] == 400 and d.continuation["max_steps"] == [400, 600]
  assert d.continuation["flags"] == {"max_number_of_steps": ["400", "600"]}
  d = run_record.decide("r", _info(finished=False), _now(), latest_step=400, max_steps=400)
  assert d.action == run_record.COMPLETE  # killed after its final checkpoint, before it said so


def test_a_changed_training_flag_is_refused_in_one_line():
  with pytest.raises(errors.BadValue) as e:
    run_record.decide("runs/x", _info(learning_rate=0.001, optimizer="adam"),
                      _now(learning_rate=0.05, optimizer="sgd", random_flip=False), latest_step=400, max_steps=400)
  message = str(e.value)
  assert "\n" not in message
  assert "--learning_rate=0.05 (the run: --learning_rate=0.001)" in message
  assert "--optimizer=sgd (the run: --optimizer=adam)" in message
  assert "--norandom_flip (the run: --random_flip)" in message
  assert "use a new --train_dir" in message and "--flagfile=runs/x/flags.txt" in message
  assert "--max_number_of_steps above 400" in message
  with pytest.raises(errors.BadValue, match=r"--max_number_of_steps=200 \(the run: --max_number_of_steps=400\)"):
    run_record.decide("r", _info(), _now(max_number_of_steps=200), latest_step=400, max_steps=200)
  with pytest.raises(errors.BadValue, match=r"--dropout_rate=0.5 \(the run: --dropout_rate unset\)"):
    run_record.decide("r", _info(), _now(dropout_rate=0.5), latest_step=400, max_steps=400)


def test_older_records_edited_flags_and_a_deleted_final_checkpoint(tmp_path):
  legacy = {"model_name": "cifarnet", "finished": True, "final_step": 400, "max_steps": 400}
  d = run_record.decide("r", legacy, _now(learning_rate=9.0), latest_step=400, max_steps=400)
  assert d.action == run_record.FINISHED and d.legacy and not d.write_flags_txt
  assert len(d.warnings) == 1 and "older version" in d.warnings[0]
  d = run_record.decide("r", {**legacy, "finished": False}, _now(), latest_step=100, max_steps=400)
  assert d.action == run_record.RESUME and d.legacy and len(d.warnings) == 1
  (tmp_path / "flags.txt").write_text("--learning_rate=0.05\n")
  info = _info(finished=False)
  info["flags_txt_sha256"] = "0" * 64
  d = run_record.decide(str(tmp_path), info, _now(), latest_step=100, max_steps=400)
  assert d.action == run_record.RESUME and not d.write_flags_txt
  assert len(d.warnings) == 1 and "was changed or removed" in d.warnings[0]
  with pytest.raises(errors.BadValue, match=r"finished at step 400, but its final checkpoint ckpt-400 is gone "
                                            r"\(the newest is ckpt-300\)\. Nothing was changed"):
    run_record.decide("r", _info(), _now(), latest_step=300, max_steps=400)


def _files(directory):
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
  return out


def test_trainer_extends_records_a_continuation_and_refuses_a_deleted_final_checkpoint(tiny_dataset, tmp_path, caplog):
  run = tmp_path / "run"
  tiny_data.train(run, tiny_dataset, max_number_of_steps=2)
  info = tiny_data.train(run, tiny_dataset, max_number_of_steps=4, log_every_n_steps=1)
  assert info["final_step"] == 4 and info["max_steps"] == 4
  (continuation,) = info["continuations"]
  assert continuation["at_step"] == 2 and continuation["max_steps"] == [2, 4]
  assert "--max_number_of_steps=4" in (run / "flags.txt").read_text().split()
  assert info["train_flags"]["max_number_of_steps"] == "2"  # the record of how the run began stays
  # The final checkpoint deleted: refused, nothing rewritten.
  for name in os.listdir(run):
    if name.startswith("ckpt-4."):
      os.remove(run / name)
  (run / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
  before = _files(run)
  with pytest.raises(errors.BadValue, match="final checkpoint ckpt-4 is gone"):
    tiny_data.train(run, tiny_dataset, max_number_of_steps=4)
  assert _files(run) == before


def test_trainer_continues_an_older_run_and_keeps_an_edited_flags_txt(tiny_dataset, tmp_path, caplog):
  run = tmp_path / "run"
  tiny_data.train(run, tiny_dataset, max_number_of_steps=2)
  # An older version's run: no record in run_info.json; and flags.txt edited by hand.
  info = json.loads((run / "run_info.json").read_text())
  for key in ("train_flags", "flags_txt_sha256", "continuations"):
    del info[key]
  info["finished"] = False
  (run / "run_info.json").write_text(json.dumps(info))
  edited = (run / "flags.txt").read_text() + "# edited by hand\n"
  (run / "flags.txt").write_text(edited)
  with caplog.at_level(logging.WARNING):
    info = tiny_data.train(run, tiny_dataset, max_number_of_steps=3, learning_rate=0.2)
  assert info["final_step"] == 3
  assert [r.getMessage() for r in caplog.records].count(run_record.legacy_warning(str(run))) == 1
  assert (run / "flags.txt").read_text() == edited
