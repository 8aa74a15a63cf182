import hashlib
import os
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as raw_save

from fl.learning.store import (
    BlobIntegrityError,
    BlobMissingError,
    InvalidUpdateError,
    StoreError,
    UpdateStore,
    content_hash,
    deserialize,
    hash_state,
    serialize,
    validate_update,
)


@pytest.fixture
def reference():
    generator = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(4, 3, generator=generator), "layer.bias": torch.randn(4, generator=generator)}


@pytest.fixture
def store(tmp_path):
    return UpdateStore(str(tmp_path / "updates"))


def test_serialize__round_trip__equal_tensors(reference):
    # Execute
    actual = deserialize(serialize(reference))

    # Assert
    assert sorted(actual) == sorted(reference)
    for name in reference:
        assert torch.equal(actual[name], reference[name])


def test_serialize__same_state_any_key_order_or_dtype__same_bytes(reference):
    # Prepare
    reordered = dict(reversed(list(reference.items())))
    as_float64 = {name: value.double() for name, value in reference.items()}
    non_contiguous = {name: value.t().contiguous().t() for name, value in reference.items()}

    # Execute
    expected = serialize(reference)

    # Assert
    assert serialize(reordered) == expected
    assert serialize(as_float64) == expected
    assert serialize(non_contiguous) == expected


def test_hash_state__is_sha256_of_canonical_bytes(reference):
    expected = hashlib.sha256(serialize(reference)).digest()

    actual = hash_state(reference)

    assert actual == expected == content_hash(serialize(reference))
    assert len(actual) == 32


def test_update_store__put_then_get__same_bytes_at_content_address(store, reference, tmp_path):
    # Prepare
    data = serialize(reference)

    # Execute
    h = store.put(data)
    again = store.put(data)

    # Assert
    assert h == again == content_hash(data)
    assert store.has(h) and store.has(h.hex()) and store.has("0x" + h.hex())
    assert store.get(h) == data
    assert sorted(p.name for p in (tmp_path / "updates").iterdir()) == [f"{h.hex()}.safetensors"]


def test_update_store__load_update__valid_state(store, reference):
    h = store.put_state(reference)

    actual = store.load_update(h, reference)

    assert all(torch.equal(actual[name], reference[name]) for name in reference)


def test_update_store__tampered_blob__integrity_error(store, reference, tmp_path):
    # Prepare
    h = store.put_state(reference)
    blob = tmp_path / "updates" / f"{h.hex()}.safetensors"
    tampered = bytearray(blob.read_bytes())
    tampered[-1] ^= 0x01
    blob.write_bytes(bytes(tampered))

    # Execute / Assert
    with pytest.raises(BlobIntegrityError, match="altered"):
        store.get(h)


def test_update_store__missing_blob__missing_error(store):
    with pytest.raises(BlobMissingError):
        store.get(b"\x00" * 32)


def test_update_store__bad_digest__value_error(store):
    with pytest.raises(ValueError, match="32 bytes"):
        store.get(b"\x00" * 31)


def test_store_errors__share_a_base_class():
    assert all(issubclass(e, StoreError) for e in (BlobIntegrityError, BlobMissingError, InvalidUpdateError))


def wrong_shape(state):
    return {**state, "layer.bias": torch.zeros(5)}


def with_nan(state):
    return {**state, "layer.bias": torch.tensor([0.0, float("nan"), 0.0, 0.0])}


def with_inf(state):
    return {**state, "layer.weight": torch.full((4, 3), float("inf"))}


def extra_key(state):
    return {**state, "backdoor": torch.zeros(1)}


def missing_key(state):
    return {"layer.weight": state["layer.weight"]}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [(wrong_shape, "shape"), (with_nan, "NaN"), (with_inf, "infinite"), (extra_key, "extra"), (missing_key, "missing")],
)
def test_update_store__load_update__invalid_update_error(store, reference, corrupt, message):
    # Prepare: a valid blob (hash matches) whose content does not fit the model
    h = store.put_state(corrupt(reference))

    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match=message):
        store.load_update(h, reference)


def test_update_store__float64_blob__invalid_update_error(store, reference):
    h = store.put(raw_save({name: value.double() for name, value in reference.items()}))

    with pytest.raises(InvalidUpdateError, match="dtype"):
        store.load_update(h, reference)


def test_update_store__not_safetensors__invalid_update_error(store, reference):
    h = store.put(b"\x80\x04 this is a pickle, not safetensors")

    with pytest.raises(InvalidUpdateError, match="not a safetensors"):
        store.load_update(h, reference)


def test_validate_update__valid__no_error(reference):
    validate_update({name: value.clone() for name, value in reference.items()}, reference)


def test_update_store__memory_url__round_trip(reference):
    # Prepare
    store = UpdateStore(f"memory://fl-test-{uuid.uuid4().hex}")
    data = serialize(reference)

    # Execute
    h = store.put(data)

    # Assert
    assert store.has(h)
    assert store.get(h) == data
    assert store.blob_path(h).endswith(f"/{h.hex()}.safetensors")
    with pytest.raises(BlobMissingError):
        store.get(b"\x01" * 32)
    store.fs.pipe_file(store.blob_path(h), b"tampered")
    with pytest.raises(BlobIntegrityError):
        store.get(h)


def test_update_store__blob_mode__readable_by_other_users(store, reference):
    h = store.put_state(reference)

    assert os.stat(store.blob_path(h)).st_mode & 0o777 == 0o644


def test_update_store__garbage_planted_at_the_hash__put_replaces_it(store, reference):
    data = serialize(reference)
    h = content_hash(data)
    with open(store.blob_path(h), "wb") as fh:
        fh.write(b"planted before the honest write")

    assert store.put(data) == h
    assert store.get(h) == data


def test_update_store__directory_planted_at_the_hash__put_raises_store_error(store, reference):
    data = serialize(reference)
    os.mkdir(store.blob_path(content_hash(data)))
    (Path(store.blob_path(content_hash(data))) / "x").write_bytes(b"1")

    with pytest.raises(StoreError):
        store.put(data)


def test_update_store__bad_digest__store_error(store):
    with pytest.raises(StoreError):
        store.get("0xnothex")
