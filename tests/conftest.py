"""Suite-wide checks (a broken toolchain is reported in one line, not as a download traceback) and
small, fast, deterministic data for the unit tests of fl/ (learning, attacks, participant)."""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fl.learning.data import Split

SOLC_VERSION = "0.8.28"
SETUP_HINT = "run `make setup` (or `bash tools/setup.sh`)"


def pytest_configure(config):
    solcx_dir = Path(os.environ.get("SOLCX_BINARY_PATH", Path.home() / ".solcx"))
    if not (solcx_dir / f"solc-v{SOLC_VERSION}").exists():
        pytest.exit(f"solc wrapper not installed in {solcx_dir}: {SETUP_HINT}", returncode=4)
    if shutil.which("node") is None:
        pytest.exit("node not found: the solc wrapper needs Node.js 20+", returncode=4)
    if not (Path(config.rootpath) / "node_modules" / "@openzeppelin" / "contracts").exists():
        pytest.exit(f"OpenZeppelin Contracts missing from node_modules: {SETUP_HINT}", returncode=4)


def make_frame(num_rows: int = 400, positive_rate: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """A tiny loan-like frame: a unique ``row_id``, two numeric, one categorical column."""
    rng = np.random.default_rng(seed)
    target = (rng.random(num_rows) < positive_rate).astype(np.int64)
    return pd.DataFrame({
        "row_id": np.arange(num_rows, dtype=np.float64),
        "amount": rng.normal(10_000, 3_000, num_rows) + 2_000 * target,
        "rate": rng.normal(12, 3, num_rows),
        "grade": rng.choice(["A", "B", "C"], num_rows),
        "target": target,
    })


def make_separable_split(num_rows: int, num_features: int = 8, seed: int = 0) -> Split:
    """Balanced labels from a fixed linear rule: easy to learn, easy to un-learn."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(num_rows, num_features, generator=generator)
    direction = torch.linspace(-1.0, 1.0, num_features)
    y = (X @ direction > 0).to(torch.float32)
    return Split(X=X, y=y)


@pytest.fixture
def loan_frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def create_frame():
    """Factory: ``create_frame(num_rows=..., positive_rate=..., seed=...)``."""
    return make_frame


@pytest.fixture
def create_separable_split():
    """Factory: ``create_separable_split(num_rows, num_features=8, seed=0)``."""
    return make_separable_split


@pytest.fixture
def separable_train() -> Split:
    return make_separable_split(512, seed=1)


@pytest.fixture
def separable_val() -> Split:
    return make_separable_split(256, seed=2)
