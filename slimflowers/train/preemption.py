"""Preemption: on SIGTERM (or SIGINT) the trainer saves a checkpoint at the current step and exits 42.

    with preemption.Watcher(strategy, manager, global_step) as watcher:
      controller = orbit.Controller(..., train_actions=[..., watcher.action])
      controller.train(steps=max_steps)        # raises preemption.Preempted after the save

A cluster scheduler stops a job with SIGTERM and a grace period; restarted with the same
command, the trainer resumes from that checkpoint and, since the input pipeline is a pure
function of the element index, continues exactly as an uninterrupted run would.

- One process (MirroredStrategy): SIGTERM/SIGINT only set a flag (no TensorFlow work in a
  signal handler); the action after each loop of steps (--steps_per_loop) saves and raises.
- Several workers (MultiWorkerMirroredStrategy): TensorFlow's own
  tf.distribute.experimental.PreemptionCheckpointHandler (as Model Garden's trainer uses it):
  the worker that receives SIGTERM tells the others through the coordination service, and all
  of them save at the same loop and stop. SIGINT is turned into SIGTERM for it.
The exit status EXIT_PREEMPTED (42, TensorFlow's own default for this) tells a scheduler that
the job is not done and should be restarted (README, "Several machines").
"""
import contextlib
import os
import signal
import threading
import types

from absl import logging
import tensorflow as tf

from slimflowers.core import errors
from slimflowers.data import service as data_service

EXIT_PREEMPTED = 42


class Preempted(errors.UserError):
  """Training stopped on a signal after saving a checkpoint; run the same command to continue."""
  exit_code = EXIT_PREEMPTED
  label = "stopped"


class Watcher:
  """Installs the signal handling for a training loop; `action` is the Orbit action that saves and stops."""

  def __init__(self, strategy, manager, global_step, *, multi_worker):
    self.manager, self.global_step, self.multi_worker = manager, global_step, multi_worker
    self.strategy = strategy
    self.signum = None
    self._previous = {}
    self._handler = None

  # ---- One process: a flag, checked after every loop of steps.
  def _on_signal(self, signum, unused_frame):
    if self.signum is None:
      logging.warning("%s received: saving a checkpoint after the current loop of steps, then stopping.",
                      signal.Signals(signum).name)
    self.signum = signum

  def _sigint_to_sigterm(self, unused_signum, unused_frame):
    os.kill(os.getpid(), signal.SIGTERM)  # the multi-worker handler watches SIGTERM only

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self
    if self.multi_worker:
      # The handler counts its calls from the `checkpointed_runs` it restores, and a non-chief restores
      # nothing from its scratch directory: after a restart the counts would differ and the workers
      # would wait for each other at different calls. With the checkpoint already holding a variable of
      # that name, the handler keeps its own counter unattached, at 0 on every worker.
      checkpoint = self.manager._checkpoint  # pylint: disable=protected-access
      if not hasattr(checkpoint, "checkpointed_runs"):
        checkpoint.checkpointed_runs = tf.Variable(0, dtype=tf.int64, trainable=False)
      self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
          self.strategy.cluster_resolver, self.manager,
          termination_config=tf.distribute.experimental.TerminationConfig(exit_fn=self._exit_after_save))
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._sigint_to_sigterm)
    else:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._on_signal)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _exit_after_save(self):
    step = int(self.global_step.numpy())
    raise Preempted(f"SIGTERM at step {step}; every worker saved ckpt-{step}. Run the same command to continue "
                    "from there.")

  def action(self, unused_output):
    """Orbit train action: after each loop, save and raise Preempted if a signal arrived."""
    step = int(self.global_step.numpy())
    if self._handler is not None:
      self._handler.save_checkpoint_if_preempted(checkpoint_number=step, check_interval=False)
      return
    if self.signum is None:
      return
    path = self.manager.save(checkpoint_number=step, check_interval=False)
    raise Preempted(f"{signal.Signals(self.signum).name} at step {step}; saved {path}. Run the same command to "
                    "continue from there.")


def service_watchdog(cfg, manager, global_step, writer, lock, program):
  """With --tf_data_service, data_service.Watchdog: a service that stops answering (or SIGTERM while the trainer
  is blocked on it) ends the run, saved, instead of hanging it; else a stand-in that watches nothing."""
  if not cfg.tf_data_service:
    return contextlib.nullcontext(types.SimpleNamespace(progress=lambda unused_output: None))

  def stop(message, exit_code):  # runs in the watchdog's thread: the main one is blocked inside TensorFlow
    step = int(global_step.numpy())
    try:
      saved = f"saved {manager.save(checkpoint_number=step, check_interval=False)}" if lock is not None else \
          "the chief saves"
    except Exception as e:  # pylint: disable=broad-except  (say what happened, and stop anyway)
      saved = f"could not save a checkpoint ({e}); the last one is kept"
    writer.flush()
    if lock is not None:
      lock.release()
    fix = ("Run the same command to continue from there." if exit_code == EXIT_PREEMPTED else
           "Restart the service (python -m slimflowers.data_service), then run the same command to continue.")
    data_service.exit_now(program, f"{message}; at step {step}, {saved}. {fix}", exit_code,
                          "stopped" if exit_code == EXIT_PREEMPTED else "error")

  return data_service.Watchdog(cfg.tf_data_service, cfg.tf_data_service_timeout_secs, stop)
