"""`python -m slimflowers.data_service`: the tf.data service's dispatcher and workers; the code is
slimflowers/data/service.py (its docstring, set below, is what --help prints)."""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: before TensorFlow loads)
from absl import flags  # pylint: disable=g-bad-import-order
from slimflowers.data import service

__doc__ = service.__doc__
main = service.main

if __name__ == "__main__":
  service.define_flags()
  flags.adopt_module_key_flags(service)  # --help lists them (they are this program's flags)
  cli.run(main)
