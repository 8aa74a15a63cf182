"""Canonical update bytes, their hashes and a content-addressed update store.

Dong et al. 2024 (Sec. 4.1-4.2) publish proposers' local updates and let every voter
fetch them and aggregate "virtually". Here an update is a state dict written as
safetensors bytes in one canonical form (keys sorted, contiguous float32 CPU tensors,
no metadata), so the same state always gives the same bytes and the same sha256; that
32-byte digest is what goes on-chain (bytes32). Blobs live under
``<root>/<hex digest>.safetensors`` on any fsspec filesystem (a local folder by
default). Reading re-hashes the bytes, so a store cannot swap an update unnoticed.
Tensors are only ever read with ``safetensors`` (never pickle / ``torch.load``).

Blobs are hostile input (any proposer can write to a shared store). Reading one:
- opens only a regular file: a directory, symlink, FIFO or device at a blob's path is refused
  without reading it (local stores open with O_NOFOLLOW | O_NONBLOCK, then fstat);
- reads at most a cap, streamed and hashed as it reads: for ``load_update`` the cap is the
  exact size of a valid update of the reference model (``expected_blob_size``) plus
  ``HEADER_SLACK``; fsspec (non-local) reads also give up after ``read_timeout`` seconds;
- checks the safetensors header against the model (keys, F32, shapes, contiguous offsets)
  before safetensors parses anything, then every value is checked finite.

Exception contract (what a voter catches): every failure to read or use a blob is a
``StoreError``, never a bare ``OSError``/``IsADirectoryError``/``RuntimeError``:
- ``BlobUnavailableError``: the blob cannot be read (not a regular file, symlink, permission,
  I/O error, timeout, backend failure); ``BlobMissingError`` (no blob) is a subclass;
- ``BlobIntegrityError``: the bytes do not hash to the requested hash;
- ``InvalidUpdateError``: too large, not safetensors, or not fitting the model;
- ``InvalidDigestError`` (also a ``ValueError``): the requested hash is not 32 bytes.
A voter treats any of them as "proposal unavailable or invalid" and votes reject.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
import threading
from collections.abc import Mapping
from functools import lru_cache

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

DIGEST_SIZE = 32
BLOB_SUFFIX = ".safetensors"
BLOB_MODE = 0o644  # shared stores: other users' clients read the blobs
HEADER_SLACK = 4096  # bytes a valid blob's header may differ from the canonical one
DEFAULT_MAX_BYTES = 2**31  # cap of `get` without a reference model
DEFAULT_READ_TIMEOUT = 60.0  # seconds, fsspec (non-local) stores
CHUNK = 1 << 20


class StoreError(Exception):
    """Base class of update-store failures."""


class BlobUnavailableError(StoreError):
    """The blob cannot be read: not a regular file, a symlink, permissions, I/O error, timeout."""


class BlobMissingError(BlobUnavailableError):
    """No blob with that hash is in the store."""


class InvalidDigestError(StoreError, ValueError):
    """A requested hash that is not 32 bytes (or their hex)."""


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


@lru_cache(maxsize=16)
def _expected_size(signature: tuple) -> int:
    return len(serialize({name: torch.zeros(shape) for name, shape in signature}))


def expected_blob_size(reference: Mapping[str, torch.Tensor]) -> int:
    """Exact byte size of a canonical update of ``reference``'s keys and shapes."""
    return _expected_size(tuple(sorted((name, tuple(value.shape)) for name, value in reference.items())))


def check_header(data: bytes, reference: Mapping[str, torch.Tensor]) -> None:
    """Raise ``InvalidUpdateError`` unless ``data``'s safetensors header describes exactly
    ``reference``'s tensors as F32, laid out back to back over the whole payload.
    Runs before safetensors parses the bytes, on at most ``len(data)`` bytes."""
    if len(data) < 8:
        raise InvalidUpdateError(f"not a safetensors blob: {len(data)} bytes")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise InvalidUpdateError(f"not a safetensors blob: header of {header_size} bytes in a {len(data)}-byte blob")
    try:
        header = json.loads(bytes(data[8:8 + header_size]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidUpdateError(f"not a safetensors blob: header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise InvalidUpdateError("not a safetensors blob: header is not a JSON object")
    header.pop("__metadata__", None)
    missing = sorted(set(reference) - set(header))
    extra = sorted(set(header) - set(reference))
    if missing or extra:
        raise InvalidUpdateError(f"keys differ from the model: missing {missing}, extra {extra}")
    spans = []
    for name in sorted(reference):
        entry, shape = header[name], list(reference[name].shape)
        if not isinstance(entry, dict):
            raise InvalidUpdateError(f"not a safetensors blob: entry {name!r} is not an object")
        if entry.get("dtype") != "F32":
            raise InvalidUpdateError(f"{name} has dtype {entry.get('dtype')!r}, expected torch.float32 (F32)")
        if entry.get("shape") != shape:
            raise InvalidUpdateError(f"{name} has shape {entry.get('shape')}, the model has {tuple(shape)}")
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise InvalidUpdateError(f"not a safetensors blob: bad data_offsets of {name}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end or stop - start != 4 * reference[name].numel():
            raise InvalidUpdateError(f"not a safetensors blob: {name} is not laid out contiguously")
        end = stop
    if 8 + header_size + end != len(data):
        raise InvalidUpdateError(
            f"not a safetensors blob: {len(data)} bytes, the header describes {8 + header_size + end}"
        )


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
            raise InvalidDigestError(f"not a hex digest: {h!r}") from exc
    h = bytes(h)
    if len(h) != DIGEST_SIZE:
        raise InvalidDigestError(f"a digest has {DIGEST_SIZE} bytes, got {len(h)}")
    return h


def _within(seconds: float, what: str, call):
    """``call()`` in a daemon thread; ``BlobUnavailableError`` if it takes over ``seconds``
    (a hung read is abandoned, not waited for; it reads at most the cap)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="store-read", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise BlobUnavailableError(f"reading {what} timed out after {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class UpdateStore:
    """Content-addressed blobs on an fsspec filesystem (a local folder, ``memory://``...)."""

    def __init__(self, root: str, durable: bool = True, read_timeout: float = DEFAULT_READ_TIMEOUT):
        self.root = root
        # durable: fsync each blob before it appears. A simulation's own scratch store may skip
        # it (about 8 ms per blob here, a third of a FedAvg round): the rename still makes each
        # blob appear whole to readers, and every read is checked against its hash anyway.
        self.durable = durable
        self.read_timeout = read_timeout  # fsspec (non-local) stores only
        self.fs, path = fsspec.core.url_to_fs(str(root))
        self.path = path.rstrip("/")
        self.fs.makedirs(self.path, exist_ok=True)

    @property
    def _local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def blob_path(self, h: bytes | str) -> str:
        return f"{self.path}/{_as_digest(h).hex()}{BLOB_SUFFIX}"

    def has(self, h: bytes | str) -> bool:
        return bool(self.fs.exists(self.blob_path(h)))

    def put(self, data: bytes) -> bytes:
        """Store ``data`` under its hash and return the hash (idempotent). A blob already at
        that path is kept only if it is a regular file with those bytes; anything else there
        (garbage, a symlink) is replaced atomically. Local blobs are written ``BLOB_MODE``."""
        data = bytes(data)
        h = content_hash(data)
        target = self.blob_path(h)
        if self._holds(h, len(data)):
            return h
        if self._local:
            # temp file in the same folder + rename: readers never see a partial blob
            fd, temp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=BLOB_SUFFIX)
            try:
                os.fchmod(fd, BLOB_MODE)
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    if self.durable:
                        os.fsync(file.fileno())
                os.replace(temp, target)
            except BaseException as exc:
                if os.path.exists(temp):
                    os.unlink(temp)
                if isinstance(exc, OSError):
                    raise BlobUnavailableError(f"cannot write blob {h.hex()} in {self.root}: {exc}") from exc
                raise
        else:
            try:
                self.fs.pipe_file(target, data)
            except Exception as exc:  # noqa: BLE001 - any backend failure is the store's error
                raise BlobUnavailableError(f"cannot write blob {h.hex()} in {self.root}: {exc}") from exc
        return h

    def _holds(self, h: bytes, size: int) -> bool:
        try:
            return self.get(h, max_bytes=size) is not None
        except StoreError:
            return False

    def put_state(self, state: Mapping[str, torch.Tensor]) -> bytes:
        return self.put(serialize(state))

    def get(self, h: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """The blob's bytes, checked against ``h``; at most ``max_bytes`` are read.

        Raises ``BlobMissingError``, ``BlobUnavailableError`` (not a regular file, I/O error,
        timeout), ``InvalidUpdateError`` (larger than ``max_bytes``) or ``BlobIntegrityError``.
        """
        digest = _as_digest(h)
        path = self.blob_path(digest)
        name = f"blob {digest.hex()} in {self.root}"
        if self._local:
            data, actual = self._read_local(path, name, max_bytes)
        else:
            data, actual = _within(self.read_timeout, name, lambda: self._read_fsspec(path, name, max_bytes))
        if actual != digest:
            raise BlobIntegrityError(f"{name} hashes to {actual.hex()}: it was altered")
        return data

    @staticmethod
    def _read_local(path: str, name: str, max_bytes: int) -> tuple[bytes, bytes]:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise BlobMissingError(f"no {name}") from exc
        except OSError as exc:  # ELOOP: a symlink; EACCES; ...
            kind = "a symlink" if os.path.islink(path) else exc.strerror
            raise BlobUnavailableError(f"{name} is unavailable: {kind}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BlobUnavailableError(f"{name} is unavailable: not a regular file")
            if info.st_size > max_bytes:
                raise InvalidUpdateError(f"{name} has {info.st_size} bytes, more than the {max_bytes} allowed")
            return _read_capped(lambda n: os.read(fd, n), name, max_bytes)
        except OSError as exc:
            raise BlobUnavailableError(f"{name} is unavailable: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def _read_fsspec(self, path: str, name: str, max_bytes: int) -> tuple[bytes, bytes]:
        try:
            info = self.fs.info(path)
        except FileNotFoundError as exc:
            raise BlobMissingError(f"no {name}") from exc
        except Exception as exc:  # noqa: BLE001 - any backend failure is "unavailable"
            raise BlobUnavailableError(f"{name} is unavailable: {exc}") from exc
        if info.get("type") != "file" or info.get("islink"):
            raise BlobUnavailableError(f"{name} is unavailable: not a regular file")
        if (info.get("size") or 0) > max_bytes:
            raise InvalidUpdateError(f"{name} has {info['size']} bytes, more than the {max_bytes} allowed")
        try:
            with self.fs.open(path, "rb") as handle:
                return _read_capped(handle.read, name, max_bytes)
        except StoreError:
            raise
        except FileNotFoundError as exc:
            raise BlobMissingError(f"no {name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise BlobUnavailableError(f"{name} is unavailable: {exc}") from exc

    def load_update(
        self, h: bytes | str, reference: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Fetch, verify and decode an update; it must fit ``reference`` (see ``validate_update``).
        At most ``expected_blob_size(reference) + HEADER_SLACK`` bytes are read."""
        data = self.get(h, max_bytes=expected_blob_size(reference) + HEADER_SLACK)
        check_header(data, reference)
        state = deserialize(data)
        validate_update(state, reference)
        return state


def _read_capped(read, name: str, max_bytes: int) -> tuple[bytes, bytes]:
    """Read chunks until EOF, hashing them; ``InvalidUpdateError`` past ``max_bytes``."""
    hasher, chunks, total = hashlib.sha256(), [], 0
    while True:
        chunk = read(min(CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise InvalidUpdateError(f"{name} is larger than the {max_bytes} bytes allowed")
        hasher.update(chunk)
        chunks.append(chunk)
    return b"".join(chunks), hasher.digest()


__all__ = [
    "BlobIntegrityError", "BlobMissingError", "BlobUnavailableError", "InvalidDigestError",
    "InvalidUpdateError", "StoreError", "check_header", "expected_blob_size",
    "UpdateStore", "content_hash", "deserialize", "hash_state", "serialize",
    "validate_update",
]

