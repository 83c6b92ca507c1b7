"""Expected errors: the input is wrong (a flag, a path, the data, a checkpoint) and the message says the fix.

    from slimflowers.core import errors
    raise errors.BadValue(f"--batch_size={n} must be >= 1.")

The entry scripts (slimflowers/core/cli.py) print a UserError as one `program: error: ...`
line and exit with its `exit_code` (2), without a traceback; anything else is a bug
and keeps its traceback. The subclasses also derive from the built-in exception a
caller would expect (ValueError, FileNotFoundError, ...), so `except ValueError` and
`pytest.raises(ValueError)` keep working.
"""
import contextlib


class UserError(Exception):
  """Bad input, not a bug: the message names the problem and the fix."""
  exit_code = 2


class BadValue(UserError, ValueError):
  """A flag or option value that cannot work."""


class NotFound(UserError, FileNotFoundError):
  """A file or directory the user named (or must create first) is missing."""


class Busy(UserError, RuntimeError):
  """Another live process is using the directory (see slimflowers/core/locks.py)."""


class TrainingStopped(UserError, RuntimeError):
  """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""
  exit_code = 1


@contextlib.contextmanager
def as_user_errors(*types):
  """Re-raises `types` (default ValueError) from a lower layer (nets, keras) as BadValue, same message."""
  types = types or (ValueError,)
  try:
    yield
  except UserError:
    raise
  except types as e:
    raise BadValue(str(e)) from e
