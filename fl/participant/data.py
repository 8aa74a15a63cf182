"""A participant's private rows: a shard of the embedded sample or its own encoded CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fl.learning.data import ClientData, DataError, Split, _split_rows, load_lending_club, make_federated_data


# ---------------------------------------------------------------------- data
def load_participant_data(spec: str, seed: int, val_fraction: float = 0.2) -> tuple[ClientData, int]:
    """A participant's private rows and the feature width.

    - ``lending:<index>/<count>``: share ``index`` of ``count`` of the embedded Lending Club
      sample, split exactly as ``ape run simulate`` splits it with ``seed`` (same encoding
      for every participant, since all apply the same deterministic preprocessing);
    - ``lending:<index>/<count>@<kaggle.csv>``: the same over the full Kaggle file;
    - a path to a CSV of already-encoded numeric feature columns plus a 0/1 ``target``
      column (the same columns for every participant); split into train/validation here.
    """
    if spec.startswith("lending:"):
        shard, _, source = spec.removeprefix("lending:").partition("@")
        try:
            index_text, count_text = shard.split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise DataError(f"bad shard {spec!r}: write lending:<index>/<count>, e.g. lending:0/8") from None
        if not 0 <= index < count:
            raise DataError(f"bad shard {spec!r}: the index must be in [0, {count})")
        data = make_federated_data(load_lending_club(source or None), count, seed)
        return data.clients[index], data.num_features
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"data file not found: {spec}; pass a CSV file or a shard such as lending:0/8")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {spec} as CSV: {exc}") from exc
    if "target" not in frame.columns:
        raise DataError(f"{spec} has no 'target' column (0/1 labels)")
    features = frame.drop(columns=["target"])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DataError(f"{spec}: columns {non_numeric} are not numeric; give encoded features (see README)")
    if frame.isna().any().any():
        raise DataError(f"{spec} has missing values; drop or fill them first")
    labels = frame["target"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{spec}: 'target' must hold only 0 and 1")
    if len(frame) < 4:
        raise DataError(f"{spec} has {len(frame)} rows; a participant needs at least 4")
    X = features.to_numpy(dtype=np.float32)
    y = labels.astype(np.float32)
    train, val = _split_rows(np.arange(len(frame)), labels.astype(np.int64), val_fraction, seed)
    to_split = lambda rows: Split(X=torch.from_numpy(X[rows].copy()), y=torch.from_numpy(y[rows].copy()))  # noqa: E731
    return ClientData(train=to_split(train), val=to_split(val)), int(X.shape[1])


def write_shard_csv(client: ClientData, columns: list[str] | None, path: str | Path) -> None:
    """Write a client's rows (train then validation) as an encoded CSV that `--data` accepts."""
    X = torch.cat([client.train.X, client.val.X]).numpy()
    y = torch.cat([client.train.y, client.val.y]).numpy().astype(np.int64)
    names = columns or [f"x{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    frame["target"] = y
    frame.to_csv(path, index=False)
