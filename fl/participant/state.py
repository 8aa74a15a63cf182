"""What a participant keeps for itself: its configuration and its state folder (ballots, adopted model, journal).

The state folder holds the salts of unrevealed ballots: the folder is 0700, ``state.json`` and the
journal 0600, and ``state.json`` is replaced atomically (temp file, fsync, rename), so a kill at any
point leaves either the old or the new file, never a partial one."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path



class ParticipantError(RuntimeError):
    """This client cannot (or must not) go on; the message says why and what to do."""


# ---------------------------------------------------------------------- configuration
@dataclass
class ClientConfig:
    """A participant's own choices (the protocol's parameters are on chain)."""

    stake: float = 64.0  # tokens staked when joining
    malicious: bool = False
    attack: str = "both"  # what a malicious client does: proposer | voter | both
    review: str = "cosine_floor"  # review rule: a name of fl.defences.voter_review.RULES (default: its DEFAULT_RULE)
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
    hostile_blob: str | None = None  # test hook of a malicious proposer (see client.plant_hostile_blob)


# ---------------------------------------------------------------------- the state folder
class ClientState:
    """What only this client knows, kept in its own folder: ``state.json`` (identity, ballots,
    adopted model) and ``journal.jsonl`` (every transaction sent, append-only)."""

    def __init__(self, folder: str | Path, address: str, voting: str, chain_id: int):
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            try:
                self.data = json.loads(self.path.read_text())
            except (ValueError, OSError) as exc:
                self._lock.close()
                raise ParticipantError(f"cannot read {self.path} ({exc}); it holds this client's ballots: "
                                       "restore it or give another --state folder") from None
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, 0o600)  # a folder written by an earlier version (0644)
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

    def save_ballot(self, round_id: int, accept_mask: int, parent_hash: bytes, salt: bytes,
                    proposal_hashes: list[bytes] | None = None) -> None:
        """Keep the salted ballot (on disk before the commit is sent, so a restart can reveal it)."""
        self.data["ballots"][str(round_id)] = {
            "accept_mask": int(accept_mask), "parent_hash": parent_hash.hex(), "salt": salt.hex(),
            "proposals": [h.hex() for h in proposal_hashes or []],
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
        with os.fdopen(os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def journal_entries(self) -> list[dict]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def _write(self) -> None:
        """Replace state.json atomically, readable by this user only (it holds ballot salts)."""
        temp = self.path.with_suffix(".tmp")
        try:
            with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
                os.fchmod(file.fileno(), 0o600)  # an old temp file may have another mode
                json.dump(self.data, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_folder(self.folder)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
