"""What a participant keeps for itself: its configuration and its state folder (ballots, adopted model, journal)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fl.protocol.votes import Vote


class ParticipantError(RuntimeError):
    """This client cannot (or must not) go on; the message says why and what to do."""


# ---------------------------------------------------------------------- configuration
@dataclass
class ClientConfig:
    """A participant's own choices (the protocol's parameters are on chain)."""

    stake: float = 64.0  # tokens staked when joining
    malicious: bool = False
    attack: str = "both"  # what a malicious client does: proposer | voter | both
    epsilon: float = 0.01
    score: str = "accuracy"
    local_epochs: int = 1
    lr: float = 1e-3
    seed: int = 0  # training seed (combined with the round)
    poll_seconds: float = 1.0
    turn_seconds: float = 2.0  # delay between two clients' turns to open or settle
    wait_for: int = 2  # active clients needed before this client opens the first round
    until_round: int | None = None  # stop once this round is settled (None: run forever)
    mint: bool = False  # mint the stake first (local TestToken only)


# ---------------------------------------------------------------------- the state folder
class ClientState:
    """What only this client knows, kept in its own folder: ``state.json`` (identity, ballots,
    adopted model) and ``journal.jsonl`` (every transaction sent, append-only)."""

    def __init__(self, folder: str | Path, address: str, voting: str, chain_id: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # one process per state folder: a second one would not see the first one's pending sends
        self._lock = open(self.folder / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ParticipantError(f"another client is running with the state folder {self.folder}") from None
        self.path = self.folder / "state.json"
        self.journal = self.folder / "journal.jsonl"
        identity = {"address": address, "voting": voting.lower(), "chain_id": chain_id}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
            recorded = {k: self.data.get(k) for k in identity}
            if recorded != identity:
                raise ParticipantError(
                    f"the state folder {self.folder} belongs to {recorded}, not to {identity}; "
                    "give each account and deployment its own --state folder"
                )
        else:
            self.data = {**identity, "ballots": {}, "adopted_round": 0, "global_hash": ""}
            self._write()

    def close(self) -> None:
        """Release the folder (a process that exits releases it too)."""
        self._lock.close()

    def ballot(self, round_id: int) -> dict | None:
        return self.data["ballots"].get(str(round_id))

    def save_ballot(self, round_id: int, vote: Vote, aggregate_hash: bytes, salt: bytes) -> None:
        self.data["ballots"][str(round_id)] = {
            "vote": int(vote), "aggregate_hash": aggregate_hash.hex(), "salt": salt.hex(),
        }
        # keep the ballots of the last rounds only
        for key in sorted(self.data["ballots"], key=int)[:-16]:
            del self.data["ballots"][key]
        self._write()

    def set_adopted(self, round_id: int, global_hash: bytes) -> None:
        self.data["adopted_round"] = round_id
        self.data["global_hash"] = global_hash.hex()
        self._write()

    def record(self, action: str, round_id: int, tx: str, **extra) -> None:
        entry = {"time": time.time(), "action": action, "round": round_id, "tx": tx, **extra}
        with open(self.journal, "a") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def journal_entries(self) -> list[dict]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def _write(self) -> None:
        temp = self.path.with_suffix(".tmp")
        with open(temp, "w") as file:
            json.dump(self.data, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.path)
