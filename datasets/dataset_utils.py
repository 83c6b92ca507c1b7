"""What dataset modules share: upstream files (download, checksum, extract), class folders, splits, .mat ids.

    from datasets import dataset_utils
    root, sources = dataset_utils.fetch_and_extract(FILES[0], dataset_dir, source, "flower_photos")
    class_names, splits = dataset_utils.split_folder(root, options)

A dataset module (flowers.py, ...) only says *which* files exist and which
(label, split) each one gets, with these helpers; the conversion itself is
datasets/conversion.py and the reading side datasets/records.py.

- downloads: `urllib.request` with a timeout, size + sha256/md5 verification, and an
  error naming the file, its URL and the exact path to put it by hand;
- archives are opened by content (Oxford 102's ".tgz" is a plain tar) and extracted
  with tarfile's "data" filter: members outside the target (`..`, absolute paths,
  links pointing out), device files and the like are refused, naming the member;
- file names that are not valid UTF-8 (an old Latin-1 system's `caf\\xe9.jpg`) or hold
  control characters are recorded under a safe name (`safe_name`).
"""
import dataclasses
import hashlib
import os
import random
import shutil
import tarfile
import urllib.request

from absl import logging

from slimflowers.core import errors
from slimflowers.core import fileio

DOWNLOAD_TIMEOUT_SECS = 60


class ConversionError(errors.UserError, RuntimeError):
  """Conversion cannot proceed (bad source, failed download); the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
  """An upstream file: where it comes from and how to recognise it."""
  filename: str
  url: str
  size: int = None
  sha256: str = None
  md5: str = None


def safe_name(name):
  """`name` as printable UTF-8: undecodable bytes as \\xNN, control characters escaped ("a\\nb")."""
  text = os.fsencode(name).decode("utf-8", "backslashreplace") if isinstance(name, bytes) else \
      name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
  return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def record_name(path):
  """The name a file is reported under: class folder + base name (enough to find it), made safe."""
  parent = os.path.basename(os.path.dirname(path))
  name = f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)
  return safe_name(name)


# ----------------------------------------------------------------------------------------------------------------------
# Downloads and archives


def _file_digest(path, algorithm):
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def verify_file(path, remote):
  """Returns {"size", "sha256"|"md5"} of `path`; raises ConversionError on a size or checksum mismatch."""
  size = os.path.getsize(path)
  fix = (f"Delete it and re-run to download it again, or put the right file at {path} "
         f"(from {remote.url}).")
  if remote.size is not None and size != remote.size:
    raise ConversionError(f"{remote.filename}: size {size:,} B at {path}, expected {remote.size:,} B. {fix}")
  info = {"size": size}
  for algorithm in ("sha256", "md5"):
    expected = getattr(remote, algorithm)
    if expected:
      actual = _file_digest(path, algorithm)
      if actual != expected:
        raise ConversionError(f"{remote.filename}: {algorithm} {actual} at {path}, expected {expected}. {fix}")
      info[algorithm] = actual
  return info


def _local_copy(remote, dataset_dir, source):
  """The path of an existing local copy of `remote` in `source` (a directory or the file) or `dataset_dir`."""
  candidates = []
  if source:
    candidates.append(source if os.path.isfile(source) and os.path.basename(source) == remote.filename
                      else os.path.join(source, remote.filename))
  candidates.append(os.path.join(dataset_dir, remote.filename))
  return next((p for p in candidates if os.path.isfile(p)), None)


def fetch(remote, dataset_dir, source=None):
  """Returns (local path, checksum info) of `remote`, downloading it into `dataset_dir` when absent.

  Looks in `source` (a directory or the file itself) and then `dataset_dir`. A download goes
  to a temporary name and is renamed only after its size and checksum match.
  """
  local = _local_copy(remote, dataset_dir, source)
  if local:
    return local, verify_file(local, remote)
  target = os.path.join(dataset_dir, remote.filename)
  logging.info("Downloading %s from %s", remote.filename, remote.url)
  os.makedirs(dataset_dir, exist_ok=True)
  try:
    with fileio.atomic_path(target) as tmp:
      with urllib.request.urlopen(remote.url, timeout=DOWNLOAD_TIMEOUT_SECS) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
      info = verify_file(tmp, remote)
  except ConversionError:
    raise
  except Exception as e:  # offline, DNS, HTTP error, timeout, ...
    raise ConversionError(
        f"Could not download {remote.filename} from {remote.url}: {e}. If this machine is offline, "
        f"download it elsewhere and put it at {target} (or pass --source=DIR holding it), then re-run.") from e
  return target, info


def extract_archive(archive_path, dest_parent, member_root):
  """Extracts a tar archive (compressed or not: opened by content) so `dest_parent/member_root` exists.

  Extraction goes to a temporary directory renamed into place, so a killed extraction
  never leaves a half-filled `member_root` that later looks complete. tarfile's "data"
  filter refuses members that would land outside it, links that point outside, device
  files and the like: the archive is then refused as a whole, naming the member.
  """
  final = os.path.join(dest_parent, member_root)
  if os.path.isdir(final):
    return final
  if not tarfile.is_tarfile(archive_path):
    raise ConversionError(f"{archive_path} is not a tar archive (gzip or plain). Delete it and re-run to download "
                          "it again.")
  with fileio.atomic_dir(final) as tmp:
    try:
      with tarfile.open(archive_path, "r:*") as tar:  # "r:*": compression detected from the content
        for member in tar.getmembers():
          if member.name.startswith(("/", os.sep)) or os.path.isabs(member.name):
            # The "data" filter would strip the leading "/" and extract it anyway: refuse it instead.
            raise tarfile.AbsolutePathError(member)
        tar.extractall(tmp, filter="data")
    except tarfile.FilterError as e:
      raise ConversionError(f"{archive_path} has an unsafe member ({e}); nothing was extracted. It is not the "
                            "upstream archive: delete it and re-run to download it again.") from e
    except (tarfile.TarError, EOFError, OSError) as e:
      raise ConversionError(f"{archive_path} cannot be extracted ({e}); delete it and re-run to download it "
                            "again.") from e
    inner = os.path.join(tmp, member_root)
    if not os.path.isdir(inner) or os.path.islink(inner):
      raise ConversionError(f"{archive_path} has no top-level '{member_root}/' directory: not the expected archive.")
    # Move the archive's member_root up to be the staged directory itself.
    for entry in os.listdir(inner):
      os.replace(os.path.join(inner, entry), os.path.join(tmp, entry))
    os.rmdir(inner)
  return final


def fetch_and_extract(remote, dataset_dir, source, member_root):
  """Returns (directory `member_root` with the archive's content, {source name: checksum info}).

  Uses, in order: an archive in `source` or `dataset_dir` (verified, extracted once), an
  already extracted `member_root/` in `source` or `dataset_dir` (its files get a tree digest),
  or a download.
  """
  if not _local_copy(remote, dataset_dir, source):
    for parent in ([source] if source and os.path.isdir(source) else []) + [dataset_dir]:
      extracted = os.path.join(parent, member_root)
      if os.path.isdir(extracted):
        return extracted, {member_root + "/": {"tree_sha256": "computed"}}
  path, info = fetch(remote, dataset_dir, source)
  return extract_archive(path, dataset_dir, member_root), {remote.filename: info}


def load_mat_ids(mat_path, key):
  """The integers of array `key` in a MATLAB .mat file (Oxford's split and label files), flattened."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  try:
    mat = scipy.io.loadmat(mat_path)
  except Exception as e:  # pylint: disable=broad-except  (scipy raises several kinds for a non-.mat file)
    raise ConversionError(f"{mat_path} is not a MATLAB .mat file ({e}): not the upstream file. Delete it and "
                          "re-run to download it again.") from e
  if key not in mat:
    raise ConversionError(f"{mat_path} has no '{key}' array (keys: "
                          f"{sorted(k for k in mat if not k.startswith('__'))}): not the upstream file.")
  return [int(i) for i in mat[key].ravel()]


# ----------------------------------------------------------------------------------------------------------------------
# Class folders and splits


def list_class_folders(root):
  """Returns (sorted class names, [(path, label)]) for a directory of class sub-folders.

  Every file below a class folder is listed (hidden ones excepted); the converter skips,
  and records, whatever is not a readable image. Class names are made safe (`safe_name`).
  """
  if not os.path.isdir(root):
    raise ConversionError(f"Source directory {root} does not exist. Pass --source=DIR with one sub-folder per class.")
  folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
  if not folders:
    raise ConversionError(f"{root} has no class sub-folders (expected {root}/<class_name>/<image files>).")
  examples = []
  for label, folder in enumerate(folders):
    examples += [(path, label) for path in walk_files(os.path.join(root, folder))]
  return [safe_name(f) for f in folders], examples


def walk_files(root):
  """Every file below the local directory `root` (sub-folders included), each once: the converter's walk (and
  predict's).

  Names starting with "." are skipped. Symbolic links to directories are not followed, so a link loop
  (`a/up -> ..`) can neither make the walk endless nor list a file twice; links to files are listed like
  files (the reader decides what they are). Sorted by folder, then name.
  """
  found = []
  for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: directory links are not entered
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    found += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
  return found


def resolve_size(value, total, flag):
  """A count (int >= 1 or 0) or a fraction in (0, 1) of `total` -> a count."""
  if value is None:
    return 0
  value = float(value)
  if value < 0:
    raise errors.BadValue(f"--{flag}={value} must be >= 0: a count of images or a fraction in (0, 1).")
  if 0 < value < 1:
    return int(round(value * total))
  if value != int(value):
    raise errors.BadValue(f"--{flag}={value}: use a whole count of images or a fraction in (0, 1).")
  return int(value)


def random_split(examples, validation_size, test_size, seed):
  """TF-Slim's flowers split: shuffle with `seed`, first -> validation, next -> test, rest -> train."""
  examples = list(examples)
  random.Random(seed).shuffle(examples)
  n_val = resolve_size(validation_size, len(examples), "validation_size")
  n_test = resolve_size(test_size, len(examples), "test_size")
  if n_val + n_test > len(examples):
    raise errors.BadValue(f"--validation_size ({n_val}) + --test_size ({n_test}) exceed the {len(examples)} images "
                          "found. Lower them.")
  splits = {"train": examples[n_val + n_test:], "validation": examples[:n_val]}
  if n_test:
    splits["test"] = examples[n_val:n_val + n_test]
  return splits


def split_folder(root, options, expected_classes=None):
  """Class folders under `root` -> (class names, {split: [(path, label)]}) by TF-Slim's shuffled split."""
  class_names, examples = list_class_folders(root)
  if expected_classes and tuple(class_names) != tuple(expected_classes):
    raise ConversionError(
        f"{root} has class folders {class_names}, expected {list(expected_classes)}. Point --source at an "
        "unmodified flower_photos directory, or use --dataset_name=folder for your own classes.")
  splits = random_split(examples, options["validation_size"], options["test_size"], options["seed"])
  return class_names, splits
