"""Fault injection: a voter's read path (``UpdateStore.load_update`` -> ``build_aggregate``) over
hostile stores. Every case must end in the store's own error (a ``StoreError``), which makes the
voter reject; never another exception, never code execution, never an unbounded read."""

import io
import os
import pickle
import struct
import threading
import time
import uuid

import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as raw_save

from fl.learning.store import (
    BlobIntegrityError,
    BlobMissingError,
    BlobUnavailableError,
    InvalidUpdateError,
    StoreError,
    UpdateStore,
    content_hash,
    expected_blob_size,
    serialize,
)
from fl.simulation.rounds import ZERO_HASH, build_aggregate


@pytest.fixture
def reference():
    generator = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(4, 3, generator=generator), "layer.bias": torch.randn(4, generator=generator)}


@pytest.fixture
def store(tmp_path):
    return UpdateStore(str(tmp_path / "updates"))


class Proposal:
    def __init__(self, update_hash, sample_count=10, proposer="0xmalicious"):
        self.update_hash, self.sample_count, self.proposer = update_hash, sample_count, proposer


def plant(store, digest: bytes, data: bytes) -> None:
    """Write ``data`` at the blob path of ``digest`` as an attacker with store access would."""
    with open(store.blob_path(digest), "wb") as fh:
        fh.write(data)


def assert_voter_rejects(store, digest, reference, error=StoreError):
    """The store raises its own error, and the voter's aggregate is unusable (a reject vote)."""
    with pytest.raises(error):
        store.load_update(digest, reference)
    aggregate, aggregate_hash, problem = build_aggregate(store, [Proposal(digest)], reference)
    assert aggregate is None and aggregate_hash == ZERO_HASH and problem


class Exploit:
    """Unpickling this runs code: a blob that is ever unpickled would set ``ran``."""

    ran = False

    def __reduce__(self):
        return (setattr, (Exploit, "ran", True))


# --- what the file system can hold at a blob's path ---------------------------------------------


def test_directory_at_blob_path__unavailable(store, reference):
    digest = content_hash(serialize(reference))
    os.mkdir(store.blob_path(digest))

    assert_voter_rejects(store, digest, reference, BlobUnavailableError)


def test_symlink_out_of_the_store__unavailable(store, reference, tmp_path):
    data = serialize(reference)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(data)  # even a valid blob is not followed out of the store
    digest = content_hash(data)
    os.symlink(outside, store.blob_path(digest))

    assert_voter_rejects(store, digest, reference, BlobUnavailableError)


def test_symlink_to_a_device__unavailable_without_reading(store, reference):
    digest = content_hash(b"zero")
    os.symlink("/dev/zero", store.blob_path(digest))  # an endless file

    assert_voter_rejects(store, digest, reference, BlobUnavailableError)


def test_fifo_at_blob_path__unavailable_without_blocking(store, reference):
    digest = content_hash(b"fifo")
    os.mkfifo(store.blob_path(digest))  # opening it for reading would wait for a writer forever
    result = {}

    def read():
        try:
            store.load_update(digest, reference)
        except Exception as exc:  # noqa: BLE001 - the test checks its type below
            result["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(20)

    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(result.get("error"), BlobUnavailableError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_blob__unavailable(store, reference):
    data = serialize(reference)
    digest = content_hash(data)
    plant(store, digest, data)
    os.chmod(store.blob_path(digest), 0)

    assert_voter_rejects(store, digest, reference, BlobUnavailableError)


def test_missing_blob__missing_is_unavailable(store, reference):
    digest = content_hash(b"never stored")

    assert_voter_rejects(store, digest, reference, BlobMissingError)
    assert issubclass(BlobMissingError, BlobUnavailableError)


# --- sizes: bounded before reading -----------------------------------------------------------------


def test_expected_blob_size__exact_for_a_valid_update(reference):
    assert expected_blob_size(reference) == len(serialize(reference))


def test_huge_blob__rejected_before_it_is_read_whole(store, reference):
    digest = content_hash(b"huge")
    with open(store.blob_path(digest), "wb") as fh:
        fh.truncate(16 * 2**30)  # 16 GiB, sparse: reading it whole would exhaust the voter's memory
    started = time.monotonic()

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)
    assert time.monotonic() - started < 60  # reading 16 GiB would take far longer (or exhaust memory)


def test_oversized_valid_safetensors__rejected(store, reference):
    big = {name: torch.zeros(1000, *value.shape[1:]) for name, value in reference.items()}
    data = serialize(big)
    digest = store.put(data)

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


def test_truncated_blob__rejected(store, reference):
    data = serialize(reference)
    digest = content_hash(data)
    plant(store, digest, data[: len(data) // 2])

    assert_voter_rejects(store, digest, reference, BlobIntegrityError)


def test_truncated_blob_under_its_own_hash__rejected(store, reference):
    data = serialize(reference)[:-8]
    digest = store.put(data)

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


def test_wrong_hash__rejected(store, reference):
    honest = serialize(reference)
    other = serialize({name: value + 1 for name, value in reference.items()})
    digest = content_hash(honest)
    plant(store, digest, other)

    assert_voter_rejects(store, digest, reference, BlobIntegrityError)


# --- contents: decoded only as safetensors, checked against the model ------------------------------


def test_pickle_blob__rejected_and_never_unpickled(store, reference):
    Exploit.ran = False
    digest = store.put(pickle.dumps({"layer.weight": Exploit()}))

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)
    assert Exploit.ran is False


def test_torch_save_blob__rejected_and_never_unpickled(store, reference):
    Exploit.ran = False
    buffer = io.BytesIO()
    torch.save({"layer.weight": reference["layer.weight"], "x": Exploit()}, buffer)
    digest = store.put(buffer.getvalue())

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)
    assert Exploit.ran is False


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.uint8])
def test_wrong_dtype__rejected(store, reference, dtype):
    digest = store.put(raw_save({name: value.to(dtype) for name, value in reference.items()}))

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b'{"layer.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]}}',  # bias missing
        b'{"layer.bias": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999999999]},'
        b' "layer.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": [16, 64]}}',
        b'{"layer.bias": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]},'
        b' "layer.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": [16, 64]}}',
        b'{"layer.bias": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},'
        b' "layer.weight": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]}}',  # overlapping
        b'{"__metadata__": {"format": "pt"}, "layer.bias": 7, "layer.weight": []}',
        b"[1, 2, 3]",
        b'{"a": ' * 200 + b"1" + b"}" * 200,
    ],
)
def test_garbage_header__rejected(store, reference, header):
    digest = store.put(struct.pack("<Q", len(header)) + header + b"\0" * 64)

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


def test_header_length_beyond_the_blob__rejected(store, reference):
    digest = store.put(struct.pack("<Q", 2**63) + b"{}")

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: {**s, "layer.bias": torch.tensor([0.0, float("nan"), 0.0, 0.0])},
        lambda s: {**s, "layer.weight": torch.full((4, 3), float("-inf"))},
        lambda s: {**s, "layer.bias": torch.zeros(5)},
        lambda s: {**s, "layer.weight": torch.zeros(3, 4)},
        lambda s: {**s, "extra": torch.zeros(1)},
        lambda s: {"layer.weight": s["layer.weight"]},
    ],
    ids=["nan", "inf", "shape", "transposed", "extra-key", "missing-key"],
)
def test_well_formed_blob_that_does_not_fit_the_model__rejected(store, reference, corrupt):
    digest = store.put_state(corrupt(reference))

    assert_voter_rejects(store, digest, reference, InvalidUpdateError)


# --- generated blobs and stores ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_any_bytes__store_error_or_a_valid_update(store, reference, data):
    digest = store.put(data)
    try:
        state = store.load_update(digest, reference)
    except StoreError:
        return
    assert sorted(state) == sorted(reference)  # only a valid update gets through


def _header_entry(draw_dtype, shape, start, end):
    return {"dtype": draw_dtype, "shape": shape, "data_offsets": [start, end]}


@st.composite
def safetensors_like(draw):
    """Blobs shaped like safetensors: a length prefix, a JSON header of plausible and
    implausible entries, then some payload (valid updates are among them)."""
    import json

    names = draw(st.lists(st.sampled_from(["layer.weight", "layer.bias", "extra", "__metadata__"]),
                          max_size=4, unique=True))
    header, offset = {}, 0
    for name in names:
        if name == "__metadata__":
            header[name] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
            continue
        shape = draw(st.lists(st.integers(-1, 5), max_size=3))
        dtype = draw(st.sampled_from(["F32", "F16", "F64", "I64", "BOOL", "X"]))
        size = draw(st.integers(0, 64))
        header[name] = _header_entry(dtype, shape, offset, offset + size)
        offset += size
    text = json.dumps(header).encode()
    declared = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1)))
    payload = draw(st.binary(min_size=0, max_size=offset + 8))
    return struct.pack("<Q", declared) + text + payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=safetensors_like())
def test_safetensors_like_bytes__store_error_or_a_valid_update(store, reference, data):
    digest = store.put(data)
    try:
        state = store.load_update(digest, reference)
    except StoreError:
        return
    assert sorted(state) == sorted(reference)
    assert all(value.dtype == torch.float32 and torch.isfinite(value).all() for value in state.values())


ENTRY_KINDS = ["valid", "directory", "symlink-out", "symlink-in", "truncated", "wrong-hash", "pickle", "nan", "empty"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(ENTRY_KINDS), min_size=1, max_size=4))
def test_generated_store__voter_rejects_any_hostile_proposal(tmp_path_factory, reference, kinds):
    root = tmp_path_factory.mktemp("hostile")
    store = UpdateStore(str(root / "updates"))
    proposals = []
    for index, kind in enumerate(kinds):
        state = {name: value + index for name, value in reference.items()}
        data = serialize(state)
        digest = content_hash(data)
        path = store.blob_path(digest)
        if kind == "valid":
            store.put(data)
        elif kind == "directory":
            os.mkdir(path)
        elif kind in ("symlink-out", "symlink-in"):
            target = root / f"target-{index}" if kind == "symlink-out" else root / "updates" / f"in-{index}"
            target.write_bytes(data)
            os.symlink(target, path)
        elif kind == "truncated":
            plant(store, digest, data[:-3])
        elif kind == "wrong-hash":
            plant(store, digest, serialize({name: value - 100 for name, value in reference.items()}))
        elif kind == "pickle":
            digest = store.put(pickle.dumps(state))
        elif kind == "nan":
            digest = store.put_state({**state, "layer.bias": torch.full((4,), float("nan"))})
        elif kind == "empty":
            plant(store, digest, b"")
        proposals.append(Proposal(digest, sample_count=index + 1))

    aggregate, aggregate_hash, problem = build_aggregate(store, proposals, reference)

    if all(kind == "valid" for kind in kinds):
        assert aggregate is not None and not problem
    else:
        assert aggregate is None and aggregate_hash == ZERO_HASH and problem


# --- fsspec stores: bounded and timed ---------------------------------------------------------------


class SlowMemoryFileSystem(MemoryFileSystem):
    """A memory store whose reads hang (a stalled network store)."""

    protocol = "slowmemory"
    delay = 30.0

    def cat_file(self, path, start=None, end=None, **kwargs):
        time.sleep(self.delay)
        return super().cat_file(path, start, end, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        handle = super()._open(path, mode, **kwargs)
        if "r" in mode:
            original = handle.read

            def slow_read(*args):
                time.sleep(self.delay)
                return original(*args)

            handle.read = slow_read
        return handle


def test_fsspec_slow_read__times_out_as_unavailable(reference):
    store = UpdateStore(f"memory://slow-{uuid.uuid4().hex}", read_timeout=0.5)
    digest = store.put_state(reference)
    slow = SlowMemoryFileSystem()
    store.fs = slow

    started = time.monotonic()
    with pytest.raises(BlobUnavailableError, match="timed out"):
        store.load_update(digest, reference)
    assert time.monotonic() - started < 25  # the read hangs for 30 s


def test_fsspec_directory_and_huge_blob__rejected(reference):
    store = UpdateStore(f"memory://hostile-{uuid.uuid4().hex}")
    as_dir = content_hash(b"dir")
    store.fs.makedirs(store.blob_path(as_dir), exist_ok=True)
    store.fs.pipe_file(store.blob_path(as_dir) + "/x", b"1")
    huge = content_hash(b"huge")
    store.fs.pipe_file(store.blob_path(huge), b"\0" * (10 * expected_blob_size(reference) + 100_000))

    assert_voter_rejects(store, as_dir, reference, BlobUnavailableError)
    assert_voter_rejects(store, huge, reference, InvalidUpdateError)


def test_fsspec_backend_error__unavailable(reference):
    store = UpdateStore(f"memory://broken-{uuid.uuid4().hex}")
    digest = store.put_state(reference)

    class Broken(MemoryFileSystem):
        def _open(self, *args, **kwargs):
            raise RuntimeError("backend exploded")

        def cat_file(self, *args, **kwargs):
            raise RuntimeError("backend exploded")

    store.fs = Broken()

    assert_voter_rejects(store, digest, reference, BlobUnavailableError)
