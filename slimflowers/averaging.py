"""`python -m slimflowers.averaging`: a run's top-N checkpoints averaged; the code is slimflowers/train/averaging.py
(its docstring, set below, is what --help prints)."""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)
from absl import flags  # pylint: disable=g-bad-import-order
from slimflowers.train import averaging

__doc__ = averaging.__doc__
main = averaging.main

if __name__ == "__main__":
  averaging.define_flags()
  flags.adopt_module_key_flags(averaging)  # --help lists them (they are this program's flags)
  cli.run(main)
