"""Per-step host overhead: steps/s of a step that costs almost nothing, our loop against `fit` and bare loops.

    .venv/bin/python bench/step_overhead_bench.py                  # ~2 min on 2 idle cores
    .venv/bin/python bench/step_overhead_bench.py --bench_steps=3000 --loops=1,10,100,1000

On a GPU a small net runs a step in a millisecond or less, and what the host does around each step
(Python, dispatching a tf.function, reading metrics back) becomes the limit. A CPU shows the same when
the step is tiny: a 3x3 convolution with 8 filters, batch norm and a dense layer on --bench_image_size px
(default 12), batch --bench_batch_size (default 8). Every side trains the same model on the same in-memory
batch with the trainer's default optimizer, and reports steps/s (best of --repeats alternated passes of
--bench_steps steps):

- ours: `trainer.ClassifierTrainer` driven by an `orbit.Controller` with our per-loop actions (the
  summary/console action, the time-based saver), as train_image_classifier.py runs it, once per
  --loops value (train_image_classifier.py's --steps_per_loop); and once more with the longest loop
  reading through a distributed iterator (`distribute_datasets_from_function`), as a run on several
  replicas or on an accelerator does (one CPU replica reads the plain dataset: trainer.distribute_dataset);
- fit: `keras.Model.fit` with `steps_per_execution` = each --fit_steps_per_execution value;
- bare, per step: a Python loop calling a `tf.function` step (the host in every step);
- bare, in-graph: one `tf.function` running all steps in a `tf.range` loop (no host at all: the floor).

The ratio printed is our best --steps_per_loop against fit's best steps_per_execution (target >= 1.0).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

flags.DEFINE_integer("bench_image_size", 12, "Input side in px (8-16: a step that costs almost nothing).")
flags.DEFINE_integer("bench_batch_size", 8, "Batch size.")
flags.DEFINE_integer("bench_steps", 2000, "Timed steps per pass.")
flags.DEFINE_integer("repeats", 3, "Alternated passes per configuration; the best of each is kept.")
flags.DEFINE_list("loops", ["1", "10", "100", "1000"], "Our --steps_per_loop values.")
flags.DEFINE_list("fit_steps_per_execution", ["1", "10", "100", "1000"], "fit's steps_per_execution values.")
FLAGS = flags.FLAGS
NUM_CLASSES = 5


def _tiny_model():
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((FLAGS.bench_image_size, FLAGS.bench_image_size, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x))


def _dataset():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  size, batch = FLAGS.bench_image_size, FLAGS.bench_batch_size
  images = tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2], minval=-1, maxval=1)
  labels = tf.random.stateless_uniform([batch], seed=[3, 4], maxval=NUM_CLASSES, dtype=tf.int32)
  return tf.data.Dataset.from_tensors((images, labels)).repeat()


def _optimizer():
  from slimflowers.train import optim, train_flags  # pylint: disable=g-import-not-at-top
  cfg = train_flags.config()
  return optim.create_optimizer(cfg.optimizer, 0.001, **optim.optimizer_options(cfg))


class Ours:
  """The trainer train.py builds, driven the way train.py drives it (Controller + per-loop actions)."""

  def __init__(self, steps_per_loop, force_distributed=False):
    import orbit  # pylint: disable=g-import-not-at-top
    import tensorflow as tf
    from slimflowers.train import optim, train_flags, trainer as trainer_lib
    cfg = train_flags.config()
    orbit.controller._log = logging.info  # pylint: disable=protected-access  (as train.run: no print() per loop)
    self.strategy = tf.distribute.MirroredStrategy(["/cpu:0"],
                                                   cross_device_ops=tf.distribute.ReductionToOneDevice())
    with self.strategy.scope():
      model = _tiny_model()
      step = orbit.utils.create_global_step()
    self.trainer = trainer_lib.ClassifierTrainer(
        strategy=self.strategy, model=model, num_classes=NUM_CLASSES,
        schedule=optim.LearningRateSchedule("fixed", 0.001), optimizer_name=cfg.optimizer,
        optimizer_options=optim.optimizer_options(cfg), global_batch_size=FLAGS.bench_batch_size, global_step=step)
    if force_distributed:  # what every multi-replica or accelerator run reads through
      self.trainer.train_dataset = self.strategy.distribute_datasets_from_function(lambda _: _dataset())
    else:  # as train.py: one CPU replica reads the plain dataset
      self.trainer.train_dataset = trainer_lib.distribute_dataset(self.strategy, lambda _: _dataset())
    writer = tf.summary.create_noop_writer()
    actions = [trainer_lib.SummaryAction(self.trainer, writer, summary_steps=100, max_steps=10**9),
               trainer_lib.TimeBasedSaver(None, step, 0)]
    self.controller = orbit.Controller(global_step=step, trainer=self.trainer, strategy=self.strategy,
                                       steps_per_loop=steps_per_loop, train_actions=actions)
    self.steps_per_loop = steps_per_loop

  def __call__(self, steps):
    self.controller.train(steps=int(self.trainer.global_step.numpy()) + steps)


class Fit:

  def __init__(self, steps_per_execution):
    import keras  # pylint: disable=g-import-not-at-top
    self.model = _tiny_model()
    self.model.compile(optimizer=_optimizer(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       steps_per_execution=steps_per_execution)
    self.dataset = _dataset()

  def __call__(self, steps):
    self.model.fit(self.dataset, steps_per_epoch=steps, epochs=1, verbose=0)


class Bare:
  """A plain tf.function step: called once per step from Python, or looped inside one tf.function."""

  def __init__(self, in_graph):
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf
    model, optimizer = _tiny_model(), _optimizer()
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    iterator = iter(_dataset())

    def step():
      images, labels = next(iterator)
      with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=True))
      optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
      return loss

    if in_graph:
      @tf.function
      def loop(n):
        loss = tf.constant(0.0)
        for _ in tf.range(n):
          loss = step()
        return loss
      self.run = lambda steps: loop(tf.constant(steps)).numpy()
    else:
      one = tf.function(step)

      def run(steps):
        for _ in range(steps):
          loss = one()
        return loss.numpy()
      self.run = run

  def __call__(self, steps):
    self.run(steps)


def main(unused_argv):
  logging.set_verbosity(logging.WARNING)  # the per-loop console line is formatted but not printed
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  print(f"tiny net (conv 3x3x8 + BN + dense) at {FLAGS.bench_image_size} px, batch {FLAGS.bench_batch_size}, "
        f"{FLAGS.bench_steps} steps per pass, best of {FLAGS.repeats} alternated passes; TF {tf.__version__}, "
        f"{os.cpu_count()} cores",
        flush=True)
  sides = {}
  for k in FLAGS.loops:
    sides[f"ours --steps_per_loop={k}"] = Ours(int(k))
  longest = FLAGS.loops[-1]
  sides[f"ours {longest}, distributed iterator"] = Ours(int(longest), force_distributed=True)
  for k in FLAGS.fit_steps_per_execution:
    sides[f"fit steps_per_execution={k}"] = Fit(int(k))
  sides["bare tf.function per step"] = Bare(in_graph=False)
  sides["bare tf.function, in-graph loop"] = Bare(in_graph=True)
  for fn in sides.values():  # tracing and first-call costs, untimed
    fn(min(FLAGS.bench_steps, 2 * max(int(k) for k in FLAGS.loops + FLAGS.fit_steps_per_execution)))
  best = {name: 0.0 for name in sides}
  runs = {name: [] for name in sides}
  for _ in range(FLAGS.repeats):  # alternate, so a noisy neighbour hurts every side alike
    for name, fn in sides.items():
      start = time.perf_counter()
      fn(FLAGS.bench_steps)
      rate = FLAGS.bench_steps / (time.perf_counter() - start)
      runs[name].append(rate)
      best[name] = max(best[name], rate)
  floor = best["bare tf.function, in-graph loop"]
  print(f"{'side':<36}{'steps/s':>10}{'x in-graph':>12}   all passes")
  for name in sides:
    print(f"{name:<36}{best[name]:>10.0f}{best[name] / floor:>12.2f}   "
          f"{', '.join(f'{r:.0f}' for r in runs[name])}")
  ours = max((v, k) for k, v in best.items() if k.startswith("ours --"))
  fit = max((v, k) for k, v in best.items() if k.startswith("fit"))
  ratio = ours[0] / fit[0]
  print(f"our best ({ours[1]}) / fit's best ({fit[1]}) = {ratio:.2f} (target >= 1.0: "
        f"{'met' if ratio >= 1.0 else 'NOT met'})")
  one = [v for k, v in best.items() if k == "ours --steps_per_loop=1"]
  if one:
    print(f"--steps_per_loop={FLAGS.loops[-1]} / --steps_per_loop=1 = "
          f"{best[f'ours --steps_per_loop={FLAGS.loops[-1]}'] / one[0]:.2f}")


if __name__ == "__main__":
  app.run(main)
