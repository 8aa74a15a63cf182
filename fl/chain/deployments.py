"""Where the protocol is deployed: one JSON file, one entry per network (no Ape import).

`ape run deploy` writes an entry; `ape run client` reads it. The file (``deployments.json``
at the project root unless ``--deployments`` or ``$STAKEFL_DEPLOYMENTS`` says otherwise)
maps a network key, ``<ecosystem>:<network>`` (for example ``ethereum:sepolia`` or
``ethereum:local``: the provider is left out, since every provider of a network reaches
the same chain), to::

    {"chain_id": 31337, "network": "ethereum:local:foundry",
     "token": "0x..", "registry": "0x..", "pool": "0x..", "voting": "0x..",
     "test_token": true, "deployer": "0x..", "block": 7, "deployed_at": "2026-..Z",
     "params": {...ProtocolParams...},
     "model": {"task": "lending", "num_features": 23, "seed": 0, "initial_hash": "0x.."}}

Writes replace the file atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FILE = "deployments.json"
ENV_VAR = "STAKEFL_DEPLOYMENTS"
CONTRACTS = ("token", "registry", "pool", "voting")


class DeploymentError(RuntimeError):
    """The deployments file is missing, malformed or has no usable entry (the message says what to do)."""


@dataclass
class Deployment:
    """The addresses and settings of one deployment."""

    chain_id: int
    network: str
    token: str
    registry: str
    pool: str
    voting: str
    test_token: bool
    deployer: str = ""
    block: int = 0
    deployed_at: str = ""
    params: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, key: str, data: dict) -> "Deployment":
        missing = [name for name in ("chain_id", "network", *CONTRACTS) if name not in data]
        if missing:
            raise DeploymentError(f"the deployment entry {key!r} lacks {missing}; redeploy with `ape run deploy --force`")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def initial_model_hash(self) -> bytes:
        return bytes.fromhex(self.model["initial_hash"].removeprefix("0x"))


def network_key(network_choice: str) -> str:
    """``ethereum:sepolia:node`` -> ``ethereum:sepolia`` (the chain, whatever the provider)."""
    parts = network_choice.split(":")
    return ":".join(parts[:2]) if len(parts) >= 2 else network_choice


def default_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_FILE)


def read_all(path: str | Path) -> dict[str, dict]:
    """Every entry of the file (an empty dict if the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DeploymentError(f"cannot read the deployments file {path}: {exc}; fix or delete it") from exc
    if not isinstance(data, dict):
        raise DeploymentError(f"the deployments file {path} must hold a JSON object keyed by network")
    return data


def load(path: str | Path, network_choice: str) -> Deployment:
    """The deployment recorded for the network of ``network_choice``."""
    path = Path(path)
    key = network_key(network_choice)
    entries = read_all(path)
    if key not in entries:
        known = ", ".join(sorted(entries)) or "none"
        if not path.exists():
            hint = f"there is no deployments file at {path}"
        else:
            hint = f"{path} records no deployment on {key} (it records: {known})"
        raise DeploymentError(
            f"{hint}; deploy first with `ape run deploy --network {network_choice} --account <alias>`, "
            "or pass --deployments with the file the deployer shared"
        )
    return Deployment.from_dict(key, entries[key])


def save(path: str | Path, network_choice: str, deployment: Deployment) -> None:
    """Record ``deployment`` for its network, keeping every other network's entry."""
    path = Path(path)
    entries = read_all(path)
    entries[network_key(network_choice)] = deployment.as_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(entries, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
