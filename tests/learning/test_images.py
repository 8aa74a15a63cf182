"""Image data, the CNN and the image task: Fashion-MNIST idx files, the Dirichlet split,
ChestX-ray14 in the NIH layout (generated PNGs), AUROC scores and the label attack."""

import gzip
import math
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fl.attacks.behaviours import Behaviour, make_proposal
from fl.learning.cnn import ModelUnavailable, SmallCNN, make_cnn, torchvision_available
from fl.learning.data import DataError, Split
from fl.learning.images import (
    CHESTXRAY_CSV,
    FASHION_MNIST_FILES,
    ImageData,
    chestxray_federated,
    dirichlet_partition,
    label_histogram,
    load_chestxray14,
    load_fashion_mnist,
    make_image_federated_data,
    most_common_findings,
    read_idx,
)
from fl.learning.model import load_state, score
from fl.learning.tasks import attack_labels, evaluate_images, get_task, mean_auroc, train_images

NUM_CLASSES = 10


def write_idx(path, array):
    """An idx file as the MNIST format describes it (unsigned bytes), gzip-compressed."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def synthetic_images(num_rows, seed, size=12):
    """Class c lights up row block c of the image: easy to learn, easy to un-learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, num_rows).astype(np.uint8)
    images = rng.integers(0, 60, (num_rows, size, size)).astype(np.uint8)
    for row, label in enumerate(labels):
        images[row, label % size, :] = 255
    return images, labels


@pytest.fixture
def fmnist_folder(tmp_path):
    """A tiny Fashion-MNIST stand-in in the Debian layout (four *-ubyte.gz files)."""
    train_images, train_labels = synthetic_images(600, seed=0)
    test_images, test_labels = synthetic_images(200, seed=1)
    arrays = {
        "train_images": train_images, "train_labels": train_labels,
        "test_images": test_images, "test_labels": test_labels,
    }
    for key, name in FASHION_MNIST_FILES.items():
        write_idx(tmp_path / name, arrays[key])
    return tmp_path


@pytest.fixture
def image_data(fmnist_folder):
    arrays = load_fashion_mnist(fmnist_folder)
    return make_image_federated_data(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
        num_clients=5, per_client=50, alpha=0.5, seed=0, test_size=100,
    )


# ------------------------------------------------------------------ idx files


def test_read_idx__written_file__round_trips(tmp_path):
    expected = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte.gz", expected)

    actual = read_idx(tmp_path / "a-idx3-ubyte.gz")

    assert actual.shape == (2, 3, 4)
    assert np.array_equal(actual, expected)


def test_read_idx__truncated_file__data_error(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x01\x02")

    with pytest.raises(DataError, match="promises"):
        read_idx(path)


def test_load_fashion_mnist__missing_folder__says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_load_fashion_mnist__debian_package__has_the_published_shapes():
    try:
        arrays = load_fashion_mnist()
    except DataError:
        pytest.skip("dataset-fashion-mnist is not installed")

    assert arrays["train_images"].shape == (60000, 28, 28)
    assert arrays["test_images"].shape == (10000, 28, 28)
    assert np.array_equal(np.bincount(arrays["train_labels"]), np.full(10, 6000))


# ------------------------------------------------------------------ partition


def test_dirichlet_partition__shares__equal_sized_and_disjoint():
    keys = np.repeat(np.arange(NUM_CLASSES), 100)

    shares = dirichlet_partition(keys, num_clients=8, per_client=50, alpha=0.3, seed=1)

    assert [len(s) for s in shares] == [50] * 8
    flat = np.concatenate(shares)
    assert len(np.unique(flat)) == len(flat)


def test_dirichlet_partition__small_alpha__fewer_classes_than_iid():
    keys = np.repeat(np.arange(NUM_CLASSES), 500)

    def mean_classes(alpha):
        shares = dirichlet_partition(keys, num_clients=20, per_client=100, alpha=alpha, seed=2)
        return np.mean([len(np.unique(keys[s])) for s in shares])

    assert mean_classes(0.1) < 4 < 9.5 < mean_classes(math.inf)


def test_dirichlet_partition__class_runs_out__shortfall_taken_elsewhere():
    # Prepare: class 0 has only 5 rows; alpha tiny so clients want a single class
    keys = np.concatenate([np.zeros(5, dtype=int), np.ones(200, dtype=int), np.full(200, 2)])

    shares = dirichlet_partition(keys, num_clients=6, per_client=60, alpha=0.01, seed=0)

    assert [len(s) for s in shares] == [60] * 6
    assert len(np.unique(np.concatenate(shares))) == 360


def test_dirichlet_partition__same_seed__same_shares():
    keys = np.repeat(np.arange(NUM_CLASSES), 50)

    first = dirichlet_partition(keys, 4, 20, 0.5, seed=7)
    second = dirichlet_partition(keys, 4, 20, 0.5, seed=7)

    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_dirichlet_partition__too_few_rows__value_error():
    with pytest.raises(ValueError, match="lower the rows per client"):
        dirichlet_partition(np.zeros(10, dtype=int), num_clients=3, per_client=5, alpha=1.0, seed=0)


# ------------------------------------------------------------------ federated image data


def test_make_image_federated_data__splits__shapes_and_private_validation(image_data):
    assert isinstance(image_data, ImageData)
    assert image_data.num_classes == NUM_CLASSES and not image_data.multilabel
    assert image_data.image_shape == (1, 12, 12)
    assert len(image_data.test) == 100
    for client in image_data.clients:
        assert (len(client.train), len(client.val)) == (40, 10)
        assert client.train.X.shape == (40, 1, 12, 12) and client.train.X.dtype == torch.float32
        assert 0.0 <= float(client.train.X.min()) and float(client.train.X.max()) <= 1.0
        assert client.train.y.dtype == torch.int64
    assert label_histogram(image_data, NUM_CLASSES).sum() == 5 * 50
    assert len(image_data.central_train()) == 5 * 40


# ------------------------------------------------------------------ ChestX-ray14 (NIH layout)

FINDINGS = [
    "Infiltration", "Effusion", "Atelectasis", "Nodule", "Mass", "Pneumothorax",
    "Consolidation", "Pleural_Thickening", "Cardiomegaly", "Emphysema", "Hernia",
]


@pytest.fixture
def nih_folder(tmp_path):
    """24 generated PNGs (RGB, 8- and 16-bit grayscale) in the NIH layout, split over two
    image folders as the download is, plus Data_Entry_2017.csv listing one absent image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(25):
        name = f"{i:08d}_000.png"
        # every top-10 finding occurs at least twice on disk, Hernia once (it falls out)
        found = {FINDINGS[i % 10]} | ({FINDINGS[(i + 3) % 10]} if i % 4 == 0 else set()) | ({"Hernia"} if i == 7 else set())
        labels = "No Finding" if i in (22, 23) else "|".join(sorted(found))
        rows.append({
            "Image Index": name, "Finding Labels": labels, "Follow-up #": 0,
            "Patient ID": i // 2, "Patient Age": 50, "Patient Gender": "F", "View Position": "PA",
        })
        if i == 24:
            continue  # listed but not on disk
        folder = tmp_path / ("images_001" if i < 12 else "images_002") / "images"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (40, 48), dtype=np.uint8)
        if i % 3 == 0:
            image = Image.fromarray(np.stack([pixels] * 3, axis=-1))
        elif i % 3 == 1:
            image = Image.fromarray(pixels)
        else:
            image = Image.fromarray(pixels.astype(np.uint16) * 256)  # 16-bit grayscale
        image.save(folder / name)
    pd.DataFrame(rows).to_csv(tmp_path / CHESTXRAY_CSV, index=False)
    return tmp_path


def test_most_common_findings__counts_and_excludes_no_finding():
    labels = pd.Series(["A|B", "B", "No Finding", "C|B", "A", "D"])

    assert most_common_findings(labels, k=3) == ["B", "A", "C"]


def test_load_chestxray14__nih_layout__multilabel_targets_and_small_images(nih_folder):
    actual = load_chestxray14(nih_folder, image_size=16)

    assert actual.images.shape == (24, 16, 16) and actual.images.dtype == np.uint8
    assert actual.targets.shape == (24, 10)
    assert "Hernia" not in actual.findings and len(actual.findings) == 10
    # image 0: Infiltration|Nodule (two findings); image 22: No Finding (all zero, key = 10)
    assert actual.targets[0].sum() == 2 and actual.targets[0, actual.findings.index("Nodule")] == 1.0
    assert actual.targets[22].sum() == 0 and actual.keys[22] == 10
    assert set(actual.patients.tolist()) == set(range(12))


def test_load_chestxray14__no_csv__says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match="Data_Entry_2017.csv"):
        load_chestxray14(tmp_path)


def test_load_chestxray14__no_images__data_error(nih_folder, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    (empty / CHESTXRAY_CSV).write_text((nih_folder / CHESTXRAY_CSV).read_text())

    with pytest.raises(DataError, match="none of the images"):
        load_chestxray14(empty)


def test_chestxray_federated__patient_disjoint_test_and_multilabel_clients(nih_folder):
    data = chestxray_federated(nih_folder, num_clients=3, per_client=5, alpha=1.0, seed=0, test_size=6, image_size=16)

    assert data.multilabel and data.num_classes == 10
    assert data.image_shape == (1, 16, 16)
    assert 6 <= len(data.test) <= 7  # whole patients (two images each)
    for client in data.clients:
        assert client.train.y.shape == (4, 10) and client.train.y.dtype == torch.float32
        assert len(client.val) == 1


def test_chestxray_task__trains_and_scores_mean_auroc(nih_folder):
    data = chestxray_federated(nih_folder, num_clients=3, per_client=5, alpha=1.0, seed=0, test_size=6, image_size=16)
    task = get_task("chestxray")
    model = task.make_model(data, seed=0)

    state = task.train(model, data.central_train(), epochs=1, lr=1e-3, seed=0, flip_labels=True)
    metrics = task.evaluate(load_state(model, state), data.test)

    assert set(state) == set(model.state_dict())
    assert 0.0 <= metrics.accuracy <= 1.0 and math.isfinite(metrics.loss)
    assert math.isnan(metrics.auroc) or 0.0 <= metrics.auroc <= 1.0


# ------------------------------------------------------------------ model


def test_small_cnn__instance_norm__ignores_brightness_and_contrast():
    model = make_cnn("cnn", in_channels=1, num_classes=NUM_CLASSES, seed=0).eval()
    images = torch.rand(4, 1, 28, 28)

    with torch.no_grad():
        expected = model(images)
        actual = model(3.0 * images + 0.5)

    assert actual.shape == (4, NUM_CLASSES)
    assert torch.allclose(actual, expected, atol=1e-4)


def test_make_cnn__same_seed__same_weights():
    first = make_cnn("cnn", 1, NUM_CLASSES, seed=3).state_dict()
    second = make_cnn("cnn", 1, NUM_CLASSES, seed=3).state_dict()

    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.skipif(torchvision_available(), reason="torchvision is installed")
def test_make_cnn__densenet_without_torchvision__clear_message():
    with pytest.raises(ModelUnavailable, match="torchvision"):
        make_cnn("densenet121", 1, NUM_CLASSES, seed=0)


# ------------------------------------------------------------------ scores and attack


def test_mean_auroc__matches_scikit_learn_macro_average_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    indicators = np.eye(4, dtype=np.int64)[labels]
    scores = np.round(rng.random((60, 4)), 1)  # many ties

    expected = roc_auc_score(indicators, scores, average="macro")
    actual = mean_auroc(indicators, scores)

    assert actual == pytest.approx(expected, abs=1e-12)


def test_mean_auroc__absent_classes__left_out_and_none_usable_is_nan():
    indicators = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # class 2 never occurs
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]])

    assert mean_auroc(indicators, scores) == 1.0
    assert math.isnan(mean_auroc(np.array([[1, 0], [1, 0]]), np.array([[0.5, 0.5], [0.4, 0.6]])))


def test_attack_labels__every_class_id_is_wrong_and_binary_is_flipped():
    y = torch.arange(NUM_CLASSES)

    attacked = attack_labels(y, NUM_CLASSES)

    assert torch.equal(attacked, torch.arange(NUM_CLASSES - 1, -1, -1))
    assert not bool((attacked == y).any())
    assert torch.equal(attack_labels(torch.tensor([0.0, 1.0])), torch.tensor([1.0, 0.0]))


def test_train_images__learns_and_attack_unlearns(image_data):
    task = get_task("fmnist")
    model = task.make_model(image_data, seed=0)
    central = image_data.central_train()
    before = evaluate_images(model, image_data.test)

    honest = train_images(model, central, epochs=8, lr=3e-3, seed=0)
    honest_metrics = evaluate_images(load_state(model, honest), image_data.test)
    poisoned = train_images(model, central, epochs=8, lr=3e-3, seed=0, flip_labels=True)
    poisoned_metrics = evaluate_images(load_state(model, poisoned), image_data.test)

    assert honest_metrics.auroc > 0.9 > before.auroc
    assert honest_metrics.accuracy > 0.8
    assert poisoned_metrics.accuracy < 0.2
    assert score(honest_metrics, "auroc") == honest_metrics.auroc


def test_train_images__same_seed__same_bits_and_model_untouched(image_data):
    model = SmallCNN(1, NUM_CLASSES)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    split = image_data.clients[0].train

    first = train_images(model, split, epochs=1, lr=1e-3, seed=5)
    second = train_images(model, split, epochs=1, lr=1e-3, seed=5)

    assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


def test_make_proposal__image_task__malicious_stays_near_global(image_data):
    task = get_task("fmnist")
    template = task.make_model(image_data, seed=0)
    global_state = {k: v.clone() for k, v in template.state_dict().items()}
    split = image_data.clients[1].train

    def distance(state):
        return sum(float(((state[k] - global_state[k]) ** 2).sum()) for k in state)

    kwargs = dict(epochs=3, lr=3e-3, seed=1, num_features=image_data.num_features, template=template, train=task.train)
    honest = make_proposal(global_state, split, Behaviour(False, False), **kwargs)
    free = make_proposal(global_state, split, Behaviour(True, False), proximal_mu=0.0, **kwargs)
    held = make_proposal(global_state, split, Behaviour(True, False), proximal_mu=10.0, **kwargs)

    assert set(honest) == set(global_state)
    assert distance(held) < distance(free)


def test_evaluate_images__multilabel_split__per_finding_scores():
    model = SmallCNN(1, 3).eval()
    split = Split(X=torch.rand(20, 1, 8, 8), y=torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]] * 10))

    metrics = evaluate_images(model, split)

    assert 0.0 <= metrics.accuracy <= 1.0 and 0.0 <= metrics.balanced_accuracy <= 1.0
    assert 0.0 <= metrics.auroc <= 1.0 and math.isfinite(metrics.loss)


def test_get_task__unknown__value_error():
    with pytest.raises(ValueError, match="task must be one of"):
        get_task("cifar")


def test_read_grayscale__16_bit_png__rescaled_not_clipped(tmp_path):
    from PIL import Image

    from fl.learning.images import read_grayscale

    pixels = np.tile(np.arange(0, 256, 16, dtype=np.uint16), (16, 1))
    Image.fromarray(pixels * 257).save(tmp_path / "wide.png")

    actual = read_grayscale(tmp_path / "wide.png", size=16)

    assert np.abs(actual.astype(int) - pixels.astype(int)).max() <= 1
