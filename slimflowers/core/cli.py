"""What every entry script shares: a quiet console, and expected errors as one line.

    from slimflowers.core import cli    # the script's FIRST import: TensorFlow's C++ logging is set before TF loads
    ...
    if __name__ == "__main__":
      cli.run(main)

The console. By default a user sees the project's own lines (progress with ETA,
evaluations, "new best", warnings that ask them to act, errors): they go to stdout.
Everything else -- TensorFlow's C++ log (`failed call to cuInit`, `Sharding callback
duration`, ...), its Python warnings, Orbit's own step lines -- is dropped, or, with
`--verbosity=1` (or SLIMFLOWERS_VERBOSE=1), written to stderr. The study runs its
children verbose and keeps their stderr in the per-child log files only.

Errors. An errors.UserError (bad flag values, missing data, a wrong checkpoint, a busy
directory) prints `program: error: message` on stderr and exits with its exit code (2),
without a traceback; anything else is a bug and keeps its traceback. `--verbosity=1`
(or SLIMFLOWERS_TRACEBACK=1) shows the traceback for expected errors too. Flags that do
not parse (an unknown flag, a bad value, a required one missing) and absl's UsageError
are refused the same way: one line, exit 2 (README, "Exit codes").
"""
import logging as py_logging
import os
import sys
import time
import warnings

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # slimflowers/core/cli.py


def _argv_verbosity(argv):
  """--verbosity=N / -v N from the command line, read before absl parses it (TF must not be loaded yet)."""
  for i, arg in enumerate(argv):
    for name in ("--verbosity", "-v"):
      value = arg[len(name) + 1:] if arg.startswith(name + "=") else (
          argv[i + 1] if arg == name and i + 1 < len(argv) else None)
      if value is not None:
        try:
          return int(value)
        except ValueError:
          return 0
  return 0


VERBOSE = _argv_verbosity(sys.argv) >= 1 or os.environ.get("SLIMFLOWERS_VERBOSE") == "1"

_QUIETED = "_SLIMFLOWERS_QUIETED_TF"  # marks a TF_CPP_MIN_LOG_LEVEL set here (inherited by child processes)
if not VERBOSE:
  # Level 3 also drops E-level lines such as "failed call to cuInit ... (303)" on machines without a GPU;
  # real failures still surface as Python exceptions.
  if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_QUIETED] = "1"
  for _category in (UserWarning, DeprecationWarning, FutureWarning):
    warnings.simplefilter("ignore", _category)
elif os.environ.pop(_QUIETED, None):
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # a quiet parent's setting: a verbose child wants TensorFlow's lines


def is_project_record(record):
  """True for log records emitted by this repository's code (not TensorFlow, Orbit, Keras, ...)."""
  path = record.pathname or ""
  return path.startswith(REPO_DIR + os.sep) and os.sep + ".venv" + os.sep not in path and \
      "site-packages" not in path


class ConsoleFormatter(py_logging.Formatter):
  """`HH:MM:SS message`, with the level spelled out for warnings and errors."""

  def format(self, record):
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    level = "" if record.levelno < py_logging.WARNING else f"{record.levelname} "
    text = f"{stamp} {level}{record.getMessage()}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


class SplitHandler(py_logging.Handler):
  """Project lines to stdout; other libraries' lines to stderr when verbose, else only their errors."""

  def emit(self, record):
    try:
      if is_project_record(record):
        stream = sys.stdout
      elif VERBOSE or record.levelno >= py_logging.ERROR:
        stream = sys.stderr
      else:
        return
      stream.write(self.format(record) + "\n")
      stream.flush()
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def configure_logging():
  """Routes Python logging (absl's included) through SplitHandler; idempotent."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  root = py_logging.getLogger()
  for handler in list(root.handlers):
    if handler is logging.get_absl_handler() or isinstance(handler, SplitHandler):
      root.removeHandler(handler)
  handler = SplitHandler()
  handler.setFormatter(ConsoleFormatter())
  root.addHandler(handler)
  if VERBOSE:
    py_logging.captureWarnings(True)
  else:
    py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


def show_traceback():
  from absl import flags  # pylint: disable=g-import-not-at-top
  verbosity = flags.FLAGS["verbosity"].value if "verbosity" in flags.FLAGS else 0
  return verbosity >= 1 or os.environ.get("SLIMFLOWERS_TRACEBACK") == "1"


def report_user_error(error, program=None):
  """Prints an expected error as `program: error: message`; returns its exit code."""
  import traceback  # pylint: disable=g-import-not-at-top
  program = program or program_name()
  if show_traceback():
    traceback.print_exception(error)
  print(f"{program}: {getattr(error, 'label', 'error')}: {error}", file=sys.stderr, flush=True)
  return error.exit_code


def program_name():
  """The script's file name (`python -m package` runs `package/__main__.py`: then the package's name)."""
  path = sys.argv[0] or "slimflowers"
  name = os.path.basename(path)
  return os.path.basename(os.path.dirname(path)) if name == "__main__.py" else name


def refuse(message, exit_code=2):
  """Exits with `program: error: message` (one line) and `exit_code`, as an expected error does."""
  print(f"{program_name()}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(exit_code)


def parse_flags(argv):
  """absl's flag parsing; a flag that does not parse is an expected error (one line, exit 2), not absl's exit 1."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    refuse(f"{str(e).rstrip('.')}. Run {program_name()} --helpshort for the flags.")


def run(main):
  """absl's app.run(main), with the console configured and errors.UserError as a one-line error."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from slimflowers.core import errors  # pylint: disable=g-import-not-at-top

  def wrapped(argv):
    configure_logging()
    try:
      return main(argv)
    except errors.UserError as e:
      sys.exit(report_user_error(e))
    except app.UsageError as e:  # absl's own "bad usage" error: the same one line and exit code as ours
      refuse(e)

  app.run(wrapped, flags_parser=parse_flags)


def markdown_table(header, body, right):
  """A Markdown table padded into aligned columns, so it reads in a terminal too (the report's, the export's).

  `header`: column titles; `body`: rows of cell strings; `right`: per column, True to right-align (numbers).
  A `|` inside a cell is escaped."""
  body = [[cell.replace("|", "\\|") for cell in row] for row in body]
  widths = [max(len(cell) for cell in column) for column in zip(header, *body)]

  def line(cells):
    return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

  rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
  return "\n".join([line(header), rule] + [line(cells) for cells in body])
