"""Oxford 102 Flowers: 8,189 images, 102 classes; train 1,020 / validation 1,020 / test 6,149.

    python download_and_convert_data.py --dataset_name=flowers102 --dataset_dir=/tmp/flowers102

Upstream (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/): `102flowers.tgz` (really a
plain tar, so it is opened by content) holds `jpg/image_00001.jpg` ... `jpg/image_08189.jpg`;
`imagelabels.mat` key `labels` (1, 8189) with values 1..102, so label = labels[id - 1] - 1;
`setid.mat` keys `trnid`, `valid`, `tstid` (1-based ids). Facts and sources: SOURCES.md §2.
"""
import os

from datasets import dataset_utils

NAME = "flowers102"
_BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
# Sizes and sha256: SOURCES.md §2 (the TFDS oxford_flowers102 checksums).
FILES = (
    dataset_utils.RemoteFile("102flowers.tgz", _BASE_URL + "102flowers.tgz", size=344_862_509,
                             sha256="2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"),
    dataset_utils.RemoteFile("imagelabels.mat", _BASE_URL + "imagelabels.mat", size=502,
                             sha256="4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"),
    dataset_utils.RemoteFile("setid.mat", _BASE_URL + "setid.mat", size=14_989,
                             sha256="46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd"),
)
# Class names in label order, copied from the TFDS builder
# tensorflow_datasets/datasets/oxford_flowers102/oxford_flowers102_dataset_builder.py (_NAMES).
CLASS_NAMES = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold", "tiger lily",
    "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon", "colt's foot", "king protea",
    "spear thistle", "yellow iris", "globe-flower", "purple coneflower", "peruvian lily", "balloon flower",
    "giant white arum lily", "fire lily", "pincushion flower", "fritillary", "red ginger", "grape hyacinth",
    "corn poppy", "prince of wales feathers", "stemless gentian", "artichoke", "sweet william", "carnation",
    "garden phlox", "love in the mist", "mexican aster", "alpine sea holly", "ruby-lipped cattleya", "cape flower",
    "great masterwort", "siam tulip", "lenten rose", "barbeton daisy", "daffodil", "sword lily", "poinsettia",
    "bolero deep blue", "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion", "petunia",
    "wild pansy", "primula", "sunflower", "pelargonium", "bishop of llandaff", "gaura", "geranium", "orange dahlia",
    "pink-yellow dahlia?", "cautleya spicata", "japanese anemone", "black-eyed susan", "silverbush",
    "californian poppy", "osteospermum", "spring crocus", "bearded iris", "windflower", "tree poppy", "gazania",
    "azalea", "water lily", "rose", "thorn apple", "morning glory", "passion flower", "lotus", "toad lily",
    "anthurium", "frangipani", "clematis", "hibiscus", "columbine", "desert-rose", "tree mallow", "magnolia",
    "cyclamen", "watercress", "canna lily", "hippeastrum", "bee balm", "ball moss", "foxglove", "bougainvillea",
    "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower", "trumpet creeper", "blackberry lily",
)
OPTIONS = {}
_SPLIT_KEYS = {"train": "trnid", "validation": "valid", "test": "tstid"}


def prepare(dataset_dir, source, options, pool):
  del options, pool
  root, sources = dataset_utils.fetch_and_extract(FILES[0], dataset_dir, source, "jpg")
  paths = {}
  for remote in FILES[1:]:
    paths[remote.filename], sources[remote.filename] = dataset_utils.fetch(remote, dataset_dir, source)
  labels = dataset_utils.load_mat_ids(paths["imagelabels.mat"], "labels")
  bad = sorted(set(labels) - set(range(1, len(CLASS_NAMES) + 1)))
  if bad:
    raise dataset_utils.ConversionError(f"{paths['imagelabels.mat']}: labels outside 1..102: {bad[:5]}.")
  splits = {}
  for split, key in _SPLIT_KEYS.items():
    ids = dataset_utils.load_mat_ids(paths["setid.mat"], key)
    out_of_range = [i for i in ids if not 1 <= i <= len(labels)]
    if out_of_range:
      raise dataset_utils.ConversionError(f"{paths['setid.mat']}: '{key}' has ids without a label: "
                                          f"{out_of_range[:5]}.")
    splits[split] = [(os.path.join(root, f"image_{i:05d}.jpg"), labels[i - 1] - 1) for i in ids]
  return list(CLASS_NAMES), splits, sources
