"""Canonical update bytes, their hashes and a content-addressed update store.

Dong et al. 2024 (Sec. 4.1-4.2) publish proposers' local updates and let every voter
fetch them and aggregate "virtually". Here an update is a state dict written as
safetensors bytes in one canonical form (keys sorted, contiguous float32 CPU tensors,
no metadata), so the same state always gives the same bytes and the same sha256; that
32-byte digest is what goes on-chain (bytes32). Blobs live under
``<root>/<hex digest>.safetensors`` on any fsspec filesystem (a local folder by
default). Reading re-hashes the bytes, so a store cannot swap an update unnoticed.
Tensors are only ever read with ``safetensors`` (never pickle / ``torch.load``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

DIGEST_SIZE = 32
BLOB_SUFFIX = ".safetensors"


class StoreError(Exception):
    """Base class of update-store failures."""


class BlobMissingError(StoreError):
    """No blob with that hash is in the store."""


class BlobIntegrityError(StoreError):
    """The stored bytes do not hash to the requested hash."""


class InvalidUpdateError(StoreError):
    """The bytes are not a usable model update (format, keys, shapes, dtype, values)."""


def _canonical(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    canonical = {}
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
        # clone: safetensors refuses tensors that share storage
        canonical[name] = value.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    return canonical


def serialize(state: Mapping[str, torch.Tensor]) -> bytes:
    """Canonical safetensors bytes of ``state``: same values -> same bytes."""
    if not state:
        raise ValueError("cannot serialize an empty state")
    return safetensors_save(_canonical(state), metadata=None)


def deserialize(data: bytes) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes; ``InvalidUpdateError`` if they are not safetensors."""
    try:
        return dict(safetensors_load(bytes(data)))
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise InvalidUpdateError(f"not a safetensors blob: {exc}") from exc


def content_hash(data: bytes) -> bytes:
    """sha256 digest (32 bytes) of ``data``: the on-chain bytes32 key of a blob."""
    return hashlib.sha256(data).digest()


def hash_state(state: Mapping[str, torch.Tensor]) -> bytes:
    """sha256 of the canonical bytes of ``state``."""
    return content_hash(serialize(state))


def validate_update(
    state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> None:
    """Raise ``InvalidUpdateError`` unless ``state`` fits ``reference``.

    Same keys, same shapes, float32, every value finite. A voter applies this to each
    proposal before aggregating, so one bad proposal cannot crash or poison the
    arithmetic with NaN/inf.
    """
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    if missing or extra:
        raise InvalidUpdateError(f"keys differ from the model: missing {missing}, extra {extra}")
    for name in sorted(reference):
        value, expected = state[name], reference[name]
        if tuple(value.shape) != tuple(expected.shape):
            raise InvalidUpdateError(
                f"{name} has shape {tuple(value.shape)}, the model has {tuple(expected.shape)}"
            )
        if value.dtype != torch.float32:
            raise InvalidUpdateError(f"{name} has dtype {value.dtype}, expected torch.float32")
        if not bool(torch.isfinite(value).all()):
            raise InvalidUpdateError(f"{name} holds NaN or infinite values")


def _as_digest(h: bytes | str) -> bytes:
    """Accept 32 raw bytes (e.g. a bytes32 from the chain) or their hex ("0x..." optional)."""
    if isinstance(h, str):
        try:
            h = bytes.fromhex(h.removeprefix("0x"))
        except ValueError as exc:
            raise ValueError(f"not a hex digest: {h!r}") from exc
    h = bytes(h)
    if len(h) != DIGEST_SIZE:
        raise ValueError(f"a digest has {DIGEST_SIZE} bytes, got {len(h)}")
    return h


class UpdateStore:
    """Content-addressed blobs on an fsspec filesystem (a local folder, ``memory://``...)."""

    def __init__(self, root: str, durable: bool = True):
        self.root = root
        # durable: fsync each blob before it appears. A simulation's own scratch store may skip
        # it (about 8 ms per blob here, a third of a FedAvg round): the rename still makes each
        # blob appear whole to readers, and every read is checked against its hash anyway.
        self.durable = durable
        self.fs, path = fsspec.core.url_to_fs(str(root))
        self.path = path.rstrip("/")
        self.fs.makedirs(self.path, exist_ok=True)

    def blob_path(self, h: bytes | str) -> str:
        return f"{self.path}/{_as_digest(h).hex()}{BLOB_SUFFIX}"

    def has(self, h: bytes | str) -> bool:
        return bool(self.fs.exists(self.blob_path(h)))

    def put(self, data: bytes) -> bytes:
        """Store ``data`` under its hash and return the hash (idempotent)."""
        data = bytes(data)
        h = content_hash(data)
        target = self.blob_path(h)
        if self.fs.exists(target):
            return h
        if isinstance(self.fs, LocalFileSystem):
            # temp file in the same folder + rename: readers never see a partial blob
            fd, temp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=BLOB_SUFFIX)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    if self.durable:
                        os.fsync(file.fileno())
                os.replace(temp, target)
            except BaseException:
                if os.path.exists(temp):
                    os.unlink(temp)
                raise
        else:
            self.fs.pipe_file(target, data)
        return h

    def put_state(self, state: Mapping[str, torch.Tensor]) -> bytes:
        return self.put(serialize(state))

    def get(self, h: bytes | str) -> bytes:
        """The blob's bytes, checked against ``h``."""
        digest = _as_digest(h)
        try:
            data = self.fs.cat_file(self.blob_path(digest))
        except FileNotFoundError as exc:
            raise BlobMissingError(f"no blob {digest.hex()} in {self.root}") from exc
        actual = content_hash(data)
        if actual != digest:
            raise BlobIntegrityError(
                f"blob {digest.hex()} in {self.root} hashes to {actual.hex()}: it was altered"
            )
        return data

    def load_update(
        self, h: bytes | str, reference: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Fetch, verify and decode an update; it must fit ``reference`` (see ``validate_update``)."""
        state = deserialize(self.get(h))
        validate_update(state, reference)
        return state


__all__ = [
    "BlobIntegrityError", "BlobMissingError", "InvalidUpdateError", "StoreError",
    "UpdateStore", "content_hash", "deserialize", "hash_state", "serialize",
    "validate_update",
]

