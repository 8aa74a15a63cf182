"""Image data for the paper's second experiment (Dong et al. 2024, Sec. 6.1.1).

The paper trains on ChestX-ray14 "distributed across clients in a non-IID fashion", each
client keeping a random share of its images as its private validation split, and tests
on held-out images. ChestX-ray14 cannot be installed here, so the default stand-in is
Fashion-MNIST (Debian package ``dataset-fashion-mnist``), split non-IID with a Dirichlet
label partition; the ChestX-ray14 loader serves users who have the NIH images.

- ``load_fashion_mnist(root)``: the four idx files (``*-ubyte.gz``) as uint8 arrays.
- ``dirichlet_partition(keys, ...)``: equal client shares whose class mix is drawn from
  ``Dir(alpha * 1)`` per client (Hsu et al. 2019, "Measuring the Effects of Non-Identical
  Data Distribution for Federated Visual Classification"); ``alpha = inf`` is IID
  (uniform random shares). Small alpha: each client holds one or two classes.
- ``make_image_federated_data``: client train/validation splits plus a global test set as
  ``ImageData`` (a ``fl.learning.data.FederatedData`` whose ``X`` are (N, C, H, W) float32 in
  [0, 1]; ``y`` are int64 class ids, or (N, K) float32 0/1 findings when multi-label).
- ``load_chestxray14(root, ...)``: the NIH layout (``Data_Entry_2017.csv`` plus the PNGs
  under ``images/`` or ``images_*/images/``), the 10 most common findings as a
  multi-label target, images read with Pillow as grayscale and resized small.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fl.learning.data import ClientData, DataError, FederatedData, Split

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CHESTXRAY_CSV = "Data_Entry_2017.csv"
CHESTXRAY_NUM_FINDINGS = 10
NO_FINDING = "No Finding"

# idx type codes (http://yann.lecun.com/exdb/mnist/): only unsigned bytes occur here
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ImageData(FederatedData):
    """Federated image data; ``num_features`` is C*H*W (the flat size of one image)."""

    num_classes: int = 0
    image_shape: tuple[int, int, int] = (1, 28, 28)
    class_names: list[str] = field(default_factory=list)
    multilabel: bool = False


# ----------------------------------------------------------------------------------------
# Fashion-MNIST


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzip-compressed or plain) as a numpy array of its declared shape."""
    file = Path(path)
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {file} ({type(exc).__name__}: {exc}); reinstall the data set") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{file} is not an idx file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{file} holds {len(data) - header} data bytes, its header promises {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def load_fashion_mnist(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """The Fashion-MNIST idx files under ``root`` (default: Debian's install folder).

    Returns ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,) uint8,
    ``test_images`` (10000, 28, 28) and ``test_labels`` (10000,).
    """
    folder = Path(root or FASHION_MNIST_ROOT)
    missing = [name for name in FASHION_MNIST_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST files {missing} not found in {folder}: install them with "
            "`sudo apt-get install dataset-fashion-mnist` (tools/setup.sh does this), or pass "
            "the folder holding the four *-ubyte.gz files as --data-file"
        )
    arrays = {key: read_idx(folder / name) for key, name in FASHION_MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{folder}: {part} images {images.shape} do not match labels {labels.shape}")
    return arrays


# ----------------------------------------------------------------------------------------
# Partition


def dirichlet_partition(
    keys: np.ndarray, num_clients: int, per_client: int, alpha: float, seed: int
) -> list[np.ndarray]:
    """Row indices of ``num_clients`` disjoint shares of ``per_client`` rows each.

    ``keys`` are each row's class (any integers). Client k draws its class mix
    ``q_k ~ Dir(alpha * 1)`` and then ``Multinomial(per_client, q_k)`` rows per class,
    without replacement from the rows left. A class that runs out hands its shortfall to
    the client's next most likely classes. ``alpha = inf`` gives IID shares: uniform
    random rows. Each share is returned sorted.
    """
    keys = np.asarray(keys)
    if num_clients < 1 or per_client < 1:
        raise ValueError("num_clients and per_client must be positive")
    if not alpha > 0:
        raise ValueError(f"the Dirichlet concentration must be positive, got {alpha}")
    if num_clients * per_client > len(keys):
        raise ValueError(
            f"{num_clients} clients x {per_client} rows need {num_clients * per_client} rows, "
            f"the data has {len(keys)}: lower the rows per client"
        )
    rng = np.random.default_rng(seed)
    if math.isinf(alpha):
        order = rng.permutation(len(keys))
        return [np.sort(order[k * per_client:(k + 1) * per_client]) for k in range(num_clients)]

    classes = np.unique(keys)
    pools = [list(rng.permutation(np.flatnonzero(keys == c))) for c in classes]
    shares = []
    for _ in range(num_clients):
        mix = rng.dirichlet(np.full(len(classes), float(alpha)))
        wanted = rng.multinomial(per_client, mix)
        taken: list[int] = []
        shortfall = 0
        for c in np.argsort(-mix, kind="stable"):
            n = min(int(wanted[c]), len(pools[c]))
            shortfall += int(wanted[c]) - n
            taken += [pools[c].pop() for _ in range(n)]
        for c in np.argsort(-mix, kind="stable"):
            n = min(shortfall, len(pools[c]))
            shortfall -= n
            taken += [pools[c].pop() for _ in range(n)]
        shares.append(np.sort(np.asarray(taken, dtype=np.int64)))
    return shares


def label_histogram(data: FederatedData, num_classes: int) -> np.ndarray:
    """(clients, classes) counts of each client's train + validation class ids."""
    return np.stack([
        np.bincount(torch.cat([c.train.y, c.val.y]).numpy(), minlength=num_classes)
        for c in data.clients
    ])


# ----------------------------------------------------------------------------------------
# Federated splits


def make_image_federated_data(
    train_images: np.ndarray,
    train_targets: np.ndarray,
    test_images: np.ndarray,
    test_targets: np.ndarray,
    *,
    num_clients: int,
    per_client: int,
    alpha: float,
    seed: int,
    test_size: int | None = None,
    val_fraction: float = 0.2,
    partition_keys: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> ImageData:
    """Client shares (Dirichlet over ``partition_keys``, default the class ids), each cut
    into a private train and a random ``val_fraction`` validation split, and a global test
    set of ``test_size`` random test images (all of them when None).

    Images are (N, H, W) or (N, C, H, W) uint8 and become float32 in [0, 1]. Targets are
    class ids (multi-class) or (N, K) 0/1 rows (multi-label).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must lie strictly between 0 and 1")
    if per_client < 2:
        raise ValueError(f"each client needs at least 2 images (train + validation), got {per_client}")
    multilabel = np.asarray(train_targets).ndim == 2
    keys = np.asarray(train_targets) if partition_keys is None else np.asarray(partition_keys)
    if keys.ndim != 1:
        raise ValueError("multi-label targets need partition_keys (one class per image)")
    shares = dirichlet_partition(keys, num_clients, per_client, alpha, seed)

    rng = np.random.default_rng(seed + 1)
    n_val = min(per_client - 1, max(1, int(round(val_fraction * per_client))))
    clients = []
    for share in shares:
        shuffled = rng.permutation(share)
        clients.append(ClientData(
            train=_image_split(train_images, train_targets, np.sort(shuffled[n_val:]), multilabel),
            val=_image_split(train_images, train_targets, np.sort(shuffled[:n_val]), multilabel),
        ))
    test_rows = np.arange(len(test_targets))
    if test_size is not None and test_size < len(test_rows):
        test_rows = np.sort(rng.choice(len(test_rows), size=test_size, replace=False))
    test = _image_split(test_images, test_targets, test_rows, multilabel)
    image_shape = tuple(int(d) for d in test.X.shape[1:])
    num_classes = int(np.asarray(train_targets).shape[1]) if multilabel else int(
        max(np.max(train_targets), np.max(test_targets)) + 1)
    return ImageData(
        clients=clients,
        test=test,
        num_features=int(np.prod(image_shape)),
        feature_names=[],
        num_classes=num_classes,
        image_shape=image_shape,  # type: ignore[arg-type]
        class_names=list(class_names or [str(c) for c in range(num_classes)]),
        multilabel=multilabel,
    )


def _image_split(images: np.ndarray, targets: np.ndarray, rows: np.ndarray, multilabel: bool) -> Split:
    X = torch.from_numpy(np.asarray(images[rows], dtype=np.float32) / 255.0)
    if X.ndim == 3:
        X = X.unsqueeze(1)
    y = np.asarray(targets)[rows]
    y = torch.from_numpy(y.astype(np.float32 if multilabel else np.int64))
    return Split(X=X.contiguous(), y=y.contiguous())


def fashion_mnist_federated(
    num_clients: int,
    per_client: int,
    alpha: float,
    seed: int,
    test_size: int | None = 2000,
    root: str | Path | None = None,
) -> ImageData:
    """Fashion-MNIST split across ``num_clients`` (Dirichlet ``alpha``; inf = IID)."""
    arrays = load_fashion_mnist(root)
    return make_image_federated_data(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
        num_clients=num_clients, per_client=per_client, alpha=alpha, seed=seed,
        test_size=test_size, class_names=list(FASHION_MNIST_CLASSES),
    )


# ----------------------------------------------------------------------------------------
# ChestX-ray14 (NIH layout)


@dataclass
class ChestXray:
    """Images (N, H, W) uint8, findings (N, K) 0/1, patient ids and each image's
    partition key (index of its most common top-K finding; K = none of them)."""

    images: np.ndarray
    targets: np.ndarray
    patients: np.ndarray
    keys: np.ndarray
    findings: list[str]


def read_chestxray_index(root: str | Path) -> pd.DataFrame:
    """``Data_Entry_2017.csv`` with a ``path`` column for each image found on disk.

    Images may sit in ``<root>/images/`` or in the download's ``<root>/images_*/images/``.
    Rows whose PNG is missing are dropped (a partial download works); none found is an error.
    """
    folder = Path(root)
    csv_path = folder / CHESTXRAY_CSV
    if not csv_path.is_file():
        raise DataError(
            f"{csv_path} not found: pass the ChestX-ray14 folder from "
            "https://nihcc.app.box.com/v/ChestXray-NIHCC (it holds Data_Entry_2017.csv and images/)"
        )
    try:
        index = pd.read_csv(csv_path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {csv_path} as CSV ({type(exc).__name__}: {exc})") from exc
    needed = ["Image Index", "Finding Labels", "Patient ID"]
    missing = [c for c in needed if c not in index.columns]
    if missing:
        raise DataError(f"{csv_path} lacks the columns {missing}; is it the NIH Data_Entry_2017.csv?")
    found = {}
    for images_dir in [folder / "images", *sorted(folder.glob("images_*/images"))]:
        if images_dir.is_dir():
            for png in images_dir.glob("*.png"):
                found.setdefault(png.name, png)
    index = index.assign(path=index["Image Index"].map(found))
    index = index[index["path"].notna()].reset_index(drop=True)
    if index.empty:
        raise DataError(
            f"none of the images listed in {csv_path} are under {folder}/images/ or "
            f"{folder}/images_*/images/: extract the image archives there"
        )
    return index


def most_common_findings(labels: pd.Series, k: int = CHESTXRAY_NUM_FINDINGS) -> list[str]:
    """The ``k`` most frequent findings of "A|B" label strings ("No Finding" excluded);
    ties go to the alphabetically first name."""
    counts: dict[str, int] = {}
    for entry in labels.astype(str):
        for finding in entry.split("|"):
            finding = finding.strip()
            if finding and finding != NO_FINDING:
                counts[finding] = counts.get(finding, 0) + 1
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]]


def read_grayscale(path: str | Path, size: int) -> np.ndarray:
    """A PNG (any mode) as a (size, size) uint8 grayscale array, resized with Pillow."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):
                # 16/32-bit grayscale: Pillow's convert("L") would clip, so rescale to 8 bits
                wide = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I;16") else max(float(wide.max()), 1.0)
                image = Image.fromarray(np.clip(wide / top * 255.0, 0, 255).astype(np.uint8))
            return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc


def load_chestxray14(
    root: str | Path, image_size: int = 64, limit: int | None = None,
    num_findings: int = CHESTXRAY_NUM_FINDINGS,
) -> ChestXray:
    """The first ``limit`` images on disk (CSV order, as the paper takes "the first N
    CXRs") with the ``num_findings`` most common findings as a multi-label target."""
    index = read_chestxray_index(root)
    if limit is not None:
        index = index.iloc[:limit]
    findings = most_common_findings(index["Finding Labels"], num_findings)
    if not findings:
        raise DataError(f"the images under {root} carry no findings besides '{NO_FINDING}'")
    position = {name: i for i, name in enumerate(findings)}
    targets = np.zeros((len(index), len(findings)), dtype=np.float32)
    keys = np.full(len(index), len(findings), dtype=np.int64)
    for row, entry in enumerate(index["Finding Labels"].astype(str)):
        for finding in entry.split("|"):
            column = position.get(finding.strip())
            if column is not None:
                targets[row, column] = 1.0
                keys[row] = min(keys[row], column)
    images = np.stack([read_grayscale(p, image_size) for p in index["path"]])
    return ChestXray(images, targets, index["Patient ID"].to_numpy(), keys, findings)


def chestxray_federated(
    root: str | Path,
    num_clients: int,
    per_client: int,
    alpha: float,
    seed: int,
    test_size: int = 2000,
    image_size: int = 64,
) -> ImageData:
    """ChestX-ray14 across clients: a patient-disjoint test set, then Dirichlet shares over
    each image's most common finding (the multi-label analogue of the label partition)."""
    needed = num_clients * per_client + test_size
    data = load_chestxray14(root, image_size=image_size, limit=needed)
    wanted_test = min(test_size, len(data.patients) - num_clients * per_client)
    if wanted_test < 1:
        raise DataError(
            f"{len(data.patients)} images under {root} for {num_clients} clients x {per_client} "
            "plus a test set: lower the images per client or add images"
        )
    rng = np.random.default_rng(seed)
    test_patients: set = set()
    test_count = 0
    for patient in rng.permutation(np.unique(data.patients)):
        if test_count >= wanted_test:
            break
        test_patients.add(patient)
        test_count += int((data.patients == patient).sum())
    is_test = np.isin(data.patients, list(test_patients))
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train) < num_clients * per_client:
        raise DataError(
            f"{len(train)} training images under {root} for {num_clients} clients x {per_client}: "
            "lower the images per client or add images"
        )
    return make_image_federated_data(
        data.images[train], data.targets[train], data.images[test], data.targets[test],
        num_clients=num_clients, per_client=per_client, alpha=alpha, seed=seed,
        partition_keys=data.keys[train], class_names=data.findings,
    )
