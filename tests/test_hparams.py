"""slimflowers.hparams writes what TensorBoard's HPARAMS tab reads."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from slimflowers.train import hparams as hparams_lib


def _hparams_summaries(logdir):
  """Returns {tag: HParamsPluginData} for every hparams-plugin summary in logdir's event files."""
  found = {}
  files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
  assert files, f"no event file written in {logdir}"
  for path in files:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
          continue
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        found[value.tag] = data
  return found


def _session_values(data):
  """{plain name: value}: the stored names are "NN_name" (slimflowers.hparams.tensorboard_key)."""
  out = {}
  for name, v in data.session_start_info.hparams.items():
    kind = v.WhichOneof("kind")
    out[name.split("_", 1)[1]] = getattr(v, kind)
  return out


def test_log_hparams_writes_experiment_and_session(tmp_path):
  logdir = str(tmp_path / "run")
  logged = hparams_lib.log_hparams(logdir, {
      "model": "cifarnet", "dataset": "synthetic_flowers", "image_size": 64, "batch_size": np.int64(32),
      "learning_rate": 0.01, "optimizer": "rmsprop", "weight_decay": np.float32(4e-5), "augment": None,
      "num_replicas": 2, "use_ema": True, "scopes": ["logits", "aux"],
  })
  assert logged["batch_size"] == 32 and isinstance(logged["batch_size"], int)
  assert logged["augment"] == "none" and logged["scopes"] == "logits,aux"

  found = _hparams_summaries(logdir)
  assert metadata.EXPERIMENT_TAG in found and metadata.SESSION_START_INFO_TAG in found

  experiment = found[metadata.EXPERIMENT_TAG].experiment
  # Stored in the order given (TensorBoard sorts by the stored name), shown under the plain name.
  assert [h.display_name for h in experiment.hparam_infos] == list(logged)
  assert [h.name for h in experiment.hparam_infos] == sorted(h.name for h in experiment.hparam_infos)
  assert experiment.hparam_infos[0].name == "00_model"
  metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
  assert ("eval_validation", "accuracy") in metrics
  assert ("train", "total_loss") in metrics

  values = _session_values(found[metadata.SESSION_START_INFO_TAG])
  # The trial's name: the run directory's name and its parent's (readable, distinct across studies).
  assert found[metadata.SESSION_START_INFO_TAG].session_start_info.group_name == f"run ({tmp_path.name})"
  assert values["model"] == "cifarnet"
  assert values["image_size"] == 64
  assert values["batch_size"] == 32
  assert values["learning_rate"] == pytest.approx(0.01)
  assert values["weight_decay"] == pytest.approx(4e-5)
  assert values["use_ema"] is True
  assert values["augment"] == "none"


def test_metric_spec_forms(tmp_path):
  logdir = str(tmp_path / "run")
  hparams_lib.log_hparams(logdir, {"model": "alexnet_v2"},
                          metrics=["accuracy", "total_loss", "eval_test/accuracy", ("", "custom")])
  experiment = _hparams_summaries(logdir)[metadata.EXPERIMENT_TAG].experiment
  metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
  assert metrics == {("eval_validation", "accuracy"), ("train", "total_loss"), ("eval_test", "accuracy"),
                     ("", "custom")}


def test_unknown_bare_metric_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="'group/tag'"):
    hparams_lib.log_hparams(str(tmp_path), {"model": "alexnet_v2"}, metrics=["f1_score"])


def test_empty_hparams_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="non-empty dict"):
    hparams_lib.log_hparams(str(tmp_path), {})


def test_tensorboard_backend_sees_the_session(tmp_path):
  """The plugin's own reader finds one session per run, with the eval metric resolved from eval_validation/."""
  from tensorboard.backend.event_processing import data_provider as dp_lib  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import plugin_event_multiplexer as mux_lib  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import backend_context as ctx_lib  # pylint: disable=g-import-not-at-top
  from tensorboard import context as tb_context  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins import base_plugin  # pylint: disable=g-import-not-at-top

  root = tmp_path / "runs"
  for i, model in enumerate(["cifarnet", "mobilenet_v1_025"]):
    run = str(root / model)
    hparams_lib.log_hparams(run, {"model": model, "learning_rate": 0.1 * (i + 1)})
    writer = tf.summary.create_file_writer(os.path.join(run, "eval_validation"))
    with writer.as_default():
      tf.summary.scalar("accuracy", 0.5 + 0.1 * i, step=10)
    writer.close()

  multiplexer = mux_lib.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(root))
  multiplexer.Reload()
  provider = dp_lib.MultiplexerDataProvider(multiplexer, str(root))
  context = base_plugin.TBContext(logdir=str(root), multiplexer=multiplexer, data_provider=provider)
  backend = ctx_lib.Context(context)
  ctx = tb_context.RequestContext()
  content = backend.hparams_metadata(ctx, experiment_id="")
  sessions = {run for run, tags in content.items() if metadata.SESSION_START_INFO_TAG in tags}
  assert sessions == {"cifarnet", "mobilenet_v1_025"}
  scalars = backend.scalars_metadata(ctx, experiment_id="")
  assert "accuracy" in scalars["cifarnet/eval_validation"]
