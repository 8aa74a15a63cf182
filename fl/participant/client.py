"""One decentralised participant: what `ape run client` decides, round after round (no Ape import).

Nobody coordinates. Every client polls the chain and acts on what it reads there:

- the latest round is settled (or there is none yet): open the next one, if this client's
  turn has come (the active clients take turns, see `turn_delay`); on a deployment with a seed
  block (``seedBlockDelay > 0``) first wait until that block is mined, and re-anchor it if its
  hash expired (256 blocks) before anyone opened;
- it is selected as a proposer and the round is proposing: train from the global model,
  put the update in the shared store, propose its hash;
- it is selected as a voter and proposing is over: fetch every proposal, review each one on its
  own validation split (``--review``: the paper's uniform ballot ``aggregate`` or a per-proposal
  rule of fl.defences.review; a blob that is missing or invalid is rejected, never a crash), write
  the ballot (accept mask, parent hash, salt) to its state folder, then commit; after the commit
  deadline reveal the saved ballot;
- the reveal deadline has passed: settle, if this client's turn has come;
- after a settlement (also one it missed while busy or stopped): adopt the FedAvg of the accepted
  proposals (the parent model if none), bit-exact, and log each proposal's outcome and its own
  slash/reward. The hash the chain records lags one round: settling round r records the parent
  model a majority of round r's voters attested, which the client checks against the model it held.

Restart-safety: the chain says what was done (the participant flags `acted` / `revealed`
and the round's `settled`), the state folder keeps what only the client knows (the salted
ballot, written and flushed *before* the commit is sent), so a restarted client never
sends a second proposal or commit and can still reveal. Every transaction is also
journalled in ``journal.jsonl`` in the state folder ("sending" before, "sent" or "reverted" after;
"waiting" for an opening the seed block does not allow yet).

The ledger (``fl.chain.participant_ledger.ParticipantLedger``) is passed in, with a function
that classifies its exceptions as "revert" (the contract said no: re-read the chain, try later) or
"transient" (the node is unreachable: retry with backoff).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Callable

import torch

from fl.attacks.behaviours import behaviour_for, make_proposal, voter_verdicts
from fl.defences.aggregate import fedavg
from fl.defences.review import ReviewInputs, review
from fl.defences.voter_review import VoterView, review_round, rule_named
from fl.learning.data import ClientData, Split
from fl.learning.model import evaluate, init_model, load_state, score, state_of, train_local
from fl.learning.store import StoreError, UpdateStore, hash_state
from fl.participant.state import ClientConfig, ClientState, ParticipantError
from fl.protocol.params import TOKEN
from fl.protocol.votes import Role, RoundState, commitment_for, mask_from_verdicts, new_salt, verdicts_from_mask
from fl.simulation.rounds import derived_seed

log = logging.getLogger("stakefl.client")
BLOCKHASH_WINDOW = 256  # VotingRound reads a seed block's hash for 256 blocks, then needs a re-anchor
SEED_BLOCK_NOT_REACHED = "RoundSeedBlockNotReached"  # openRound's revert while the seed block is to come


def seed_block_wait(seed_block: int, head: int) -> str:
    """What an opener does with the next round's seed block `seed_block` (0: none) when the latest
    block is `head` (its transaction runs in head + 1), as VotingRound.openRound decides:
    "open", "wait" (the block is not mined yet) or "reanchor" (its hash is gone)."""
    if seed_block == 0:
        return "open"
    if head + 1 <= seed_block:
        return "wait"
    if head + 1 > seed_block + BLOCKHASH_WINDOW:
        return "reanchor"
    return "open"


# ---------------------------------------------------------------------- pure helpers
def phase(view, now: int) -> RoundState:
    """The phase of a round from its on-chain record and the time, as VotingRound._state."""
    if view.settled:
        return RoundState.SETTLED
    if now < view.proposal_deadline:
        return RoundState.PROPOSING
    if now < view.commit_deadline:
        return RoundState.COMMITTING
    if now < view.reveal_deadline:
        return RoundState.REVEALING
    return RoundState.SETTLEABLE


def turn_delay(me: str, active: list[str], round_id: int, turn_seconds: float) -> float | None:
    """Seconds this client waits before it opens or settles, so the clients take turns instead
    of racing: the active list rotated by the round id, `turn_seconds` per place (None if not active)."""
    lowered = [a.lower() for a in active]
    if me.lower() not in lowered:
        return None
    place = (lowered.index(me.lower()) - round_id) % len(lowered)
    return place * turn_seconds


class Backoff:
    """Exponential backoff with jitter, for a node that went away."""

    def __init__(self, first: float = 0.5, cap: float = 15.0):
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = self.current * (0.75 + 0.5 * random.random())
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


# ---------------------------------------------------------------------- the participant
class Participant:
    """One client's decisions. `step()` reads the chain once and takes at most the actions due."""

    def __init__(
        self,
        ledger,
        classify: Callable[[BaseException], str | None],
        store: UpdateStore,
        state: ClientState,
        data: ClientData,
        num_features: int,
        model_seed: int,
        config: ClientConfig,
        clock: Callable[[], float] = time.time,
        from_block: int = 0,
    ):
        self.ledger = ledger
        self.classify = classify
        self.store = store
        self.state = state
        self.data = data
        self.config = config
        self.clock = clock
        self.from_block = from_block
        self.behaviour = behaviour_for(config.malicious, config.attack)
        self.template = init_model(num_features, model_seed)
        self.initial_state = state_of(self.template)
        self.initial_hash = hash_state(self.initial_state)
        self.me = ledger.address
        self._models: dict[bytes, dict] = {}
        self._turn_started: dict[tuple[str, int], float] = {}
        self.done = False
        self.leaving = False
        self._warned: set = set()

    # ------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """Train and evaluate once on a few rows: torch's first call is slow (seconds on a busy
        machine), and a proposer must not spend its proposal period on it."""
        few = Split(X=self.data.train.X[:8], y=self.data.train.y[:8])
        make_proposal(self.initial_state, few, self.behaviour, epochs=1, lr=self.config.lr, seed=0,
                      num_features=few.X.shape[1])
        self._score(self.initial_state)

    def join(self) -> None:
        """Stake `config.stake` tokens unless this account already has stake (so never twice)."""
        info = self.ledger.stake()
        if info["removed"]:
            raise ParticipantError(f"{self.me} was removed from the protocol for good (stake left: {info['stake']})")
        if info["stake"] > 0:
            log.info("already staked: %s tokens (%s locked)", _tokens(info["stake"]), _tokens(info["locked"]))
            return
        amount = round(self.config.stake * TOKEN)
        balance = self.ledger.token_balance()
        if balance < amount:
            if not self.config.mint:
                raise ParticipantError(
                    f"{self.me} holds {_tokens(balance)} tokens but wants to stake {self.config.stake}; "
                    "get tokens of the deployment's token first"
                )
            self._send("mint", 0, self.ledger.mint, amount - balance)
        self._send("approve", 0, self.ledger.approve, amount)
        self._send("deposit", 0, self.ledger.deposit, amount)
        log.info("staked %s tokens", self.config.stake)

    def leave(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Withdraw the whole stake and return the amount. Free stake goes at once; stake locked in
        the live round is earned back by acting in it until it is settled (leaving early would get
        it slashed), then withdrawn. This client opens no more rounds; once its free stake is gone
        the next draw that picks it removes it without a slash."""
        self.leaving = True
        withdrawn, told = 0, False
        backoff = Backoff()
        while not should_stop():
            try:
                info = self.ledger.stake()
                free = info["stake"] - info["locked"]
                if free > 0:
                    if self._send("withdraw", 0, self.ledger.withdraw, free):
                        withdrawn += free
                elif info["stake"] == 0:
                    log.info("left: withdrew %s tokens", _tokens(withdrawn))
                    return withdrawn
                else:
                    if not told:
                        log.info("%s tokens locked in the live round; acting until it is settled",
                                 _tokens(info["locked"]))
                        told = True
                    self.step()
                backoff.reset()
                delay = self.config.poll_seconds
            except Exception as exc:  # noqa: BLE001
                if self.classify(exc) != "transient":
                    raise
                delay = backoff.next()
                log.warning("node unreachable (%s); retrying in %.1f s", _short(exc), delay)
            _sleep(delay, should_stop)
        return withdrawn

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll and act until `until_round` is settled, this client is removed, or `should_stop()`."""
        backoff = Backoff()
        while not self.done and not should_stop():
            try:
                self.step()
                backoff.reset()
                delay = self.config.poll_seconds
            except Exception as exc:  # noqa: BLE001 - classified below, the rest re-raised
                if self.classify(exc) != "transient":
                    raise
                delay = backoff.next()
                log.warning("node unreachable (%s); retrying in %.1f s", _short(exc), delay)
            _sleep(delay, should_stop)

    # ------------------------------------------------------------ one poll
    def step(self) -> None:
        r = self.ledger.current_round_id()
        view = self.ledger.round(r) if r else None
        if view is None or view.settled:
            self.catch_up(r)
            if self.config.until_round is not None and r >= self.config.until_round and not self.leaving:
                if self.state.data.get("adopted_round", 0) < r:
                    return  # not yet derived (a model not yet in the store): log it before stopping
                log.info("round %d settled; --until-round reached, stopping", r)
                self.done = True
                return
            if self._check_still_active() and not self.leaving:
                self.maybe_open(r)
            return
        self.catch_up(r - 1)  # a client busy (or stopped) through a settlement still derives and logs it
        now = int(self.clock())
        current = phase(view, now)
        me = self.ledger.participant(r)
        if me.role == Role.PROPOSER and not me.acted and current == RoundState.PROPOSING:
            self.propose(r)
        elif me.role == Role.VOTER and not me.acted and current == RoundState.COMMITTING:
            self.commit(r)
        elif me.role == Role.VOTER and me.acted and not me.revealed and current == RoundState.REVEALING:
            self.reveal(r)
        elif current == RoundState.SETTLEABLE:
            self.maybe_settle(r)

    def _check_still_active(self) -> bool:
        info = self.ledger.stake()
        if info["removed"]:
            log.warning("removed from the protocol for good (stake left %s tokens); stopping", _tokens(info["stake"]))
            self.done = True
            return False
        return info["active"]

    # ------------------------------------------------------------ opening and settling, by turns
    def _my_turn(self, action: str, round_id: int) -> bool:
        key = (action, round_id)
        started = self._turn_started.setdefault(key, time.monotonic())
        delay = turn_delay(self.me, self.ledger.active_clients(), round_id, self.config.turn_seconds)
        return delay is not None and time.monotonic() - started >= delay

    def maybe_open(self, last_round: int) -> None:
        active = self.ledger.active_clients()
        needed = max(2, self.config.wait_for) if last_round == 0 else 2
        if len(active) < needed:
            self._turn_started.pop(("open", last_round + 1), None)
            return
        if not self._my_turn("open", last_round + 1):
            return
        seed_block, head = self.ledger.next_seed_block(), self.ledger.head_block()
        action = seed_block_wait(seed_block, head)
        if action == "wait":
            self._note_seed_block_wait(last_round + 1, seed_block)
            if self.ledger.mine_blocks_if_automining(seed_block - head):
                log.info("round %d: mined %d block(s) up to the seed block (this development chain mines "
                         "only on transactions)", last_round + 1, seed_block - head)
        elif action == "reanchor":
            log.info("round %d: seed block %d expired before anyone opened; re-anchoring", last_round + 1, seed_block)
            self._send("reanchor", last_round + 1, self.ledger.reanchor_seed_block)
        else:
            self._send("open", last_round + 1, self.ledger.open_round)

    def _note_seed_block_wait(self, round_id: int, seed_block: int) -> None:
        """Waiting for the seed block is normal (it comes seedBlockDelay blocks after settlement): say it once."""
        key = ("seed-block", round_id, seed_block)
        if key not in self._warned:
            self._warned.add(key)
            log.info("round %d: waiting for seed block %d before opening", round_id, seed_block)

    def maybe_settle(self, round_id: int) -> None:
        if self._my_turn("settle", round_id):
            self._send("settle", round_id, self.ledger.settle, round_id)

    # ------------------------------------------------------------ proposing
    def propose(self, round_id: int) -> None:
        parent_hash, parent = self.held_model()
        if parent is None:
            self._warn_once(("propose", round_id), "round %d: the model this round starts from (%s) is not "
                            "derived yet; cannot propose", round_id, parent_hash.hex()[:12])
            return
        update = make_proposal(
            parent, self.data.train, self.behaviour, epochs=self.config.local_epochs,
            lr=self.config.lr, seed=derived_seed(self.config.seed, round_id, int(self.me, 16) % 2**31),
            num_features=self.data.train.X.shape[1],
        )
        if self.config.hostile_blob:
            update_hash = plant_hostile_blob(self.store, update, self.config.hostile_blob)
        else:
            update_hash = self.store.put_state(update)
        samples = len(self.data.train)
        if self._too_late(round_id, "propose", lambda v: v.proposal_deadline):
            return
        kind = self.config.hostile_blob or ("poisoned" if self.behaviour.malicious_proposer else "honest")
        self._send("propose", round_id, self.ledger.propose, round_id, update_hash, samples,
                   detail={"update": update_hash.hex(), "samples": samples, "kind": kind})

    # ------------------------------------------------------------ voting
    def commit(self, round_id: int) -> None:
        ballot = self.state.ballot(round_id)
        if ballot is None:
            proposals = self.ledger.proposals(round_id)
            verdicts, parent_hash = self.decide(round_id, proposals)
            accept_mask, salt = mask_from_verdicts(verdicts), new_salt()
            # the ballot is on disk before the commit is sent: a restart can always reveal
            self.state.save_ballot(round_id, accept_mask, parent_hash, salt, [p.update_hash for p in proposals])
        else:  # decided before a restart: commit the very same ballot
            accept_mask, parent_hash, salt = _ballot(ballot)
        commitment = commitment_for(round_id, self.me, accept_mask, parent_hash, salt)
        if self._too_late(round_id, "commit", lambda v: v.commit_deadline):
            return
        self._send("commit", round_id, self.ledger.commit, round_id, commitment,
                   detail={"accept_mask": hex(accept_mask), "parent": parent_hash.hex()})

    def decide(self, round_id: int, proposals: list) -> tuple[list[bool], bytes]:
        """One verdict per proposal (True = accept) and the parent hash this voter attests.

        Each blob is fetched and checked against the parent model; one that cannot be (missing, a
        directory, too big, altered, garbage, wrong keys/shapes/dtype, NaN/inf) is rejected, never a
        crash. The rest is the review rule's (`config.review`, fl.defences.voter_review, as
        `ape run simulate`): `aggregate` is the paper's uniform ballot (accept every proposal iff the
        FedAvg of all of them scores >= the parent's score - epsilon; an unusable proposal makes the
        aggregate unusable, so every proposal is rejected), the others judge each proposal."""
        parent_hash, parent = self.held_model()
        if parent is None:
            log.warning("round %d: the parent model %s is not derived; rejecting all %d proposals",
                        round_id, parent_hash.hex()[:12], len(proposals))
            return self._as_voter([False] * len(proposals), proposals), parent_hash
        states = []
        for i, p in enumerate(proposals):
            try:
                states.append(self.store.load_update(p.update_hash, parent))
            except (StoreError, OSError, ValueError) as exc:  # anything a proposer can cause
                states.append(None)
                log.info("round %d: proposal %d from %s unusable (%s: %s) -> reject", round_id, i,
                         p.proposer[:10], type(exc).__name__, str(exc)[:120])
        verdicts, note = self._review(proposals, states, parent)
        cast = self._as_voter(verdicts, proposals)
        log.info("round %d: %d proposals, review %s (%s) -> ballot %s, parent %s%s", round_id, len(proposals),
                 self.config.review, note, _ballot_text(cast), parent_hash.hex()[:12],
                 " (malicious: against the evidence)" if self.behaviour.malicious_voter else "")
        return cast, parent_hash

    def _review(self, proposals: list, states: list, parent: dict) -> tuple[list[bool], str]:
        """Honest verdicts of the review rule, and what it measured (for the log)."""
        count = len(proposals)
        if count == 0:
            return [], "no proposals"
        if self.config.review == "aggregate":
            if any(s is None for s in states):
                return [False] * count, "aggregate unusable"
            aggregate = fedavg([(s, p.sample_count) for s, p in zip(states, proposals)])
            candidate, current = self._score(aggregate), self._score(parent)
            accept = review("aggregate", ReviewInputs(count, aggregate_score=candidate, global_score=current),
                            epsilon=self.config.epsilon)
            return accept, f"aggregate scores {candidate:.4f} vs parent {current:.4f}"
        if all(s is None for s in states):
            return [False] * count, "no usable proposal"
        seed = derived_seed(self.config.seed, int(self.me, 16) % 2**31, 11)
        verdicts = review_round(rule_named(self.config.review), self.template, parent, states,
                                [p.sample_count for p in proposals],
                                [VoterView(self.data.val, self.data.train, seed)], train=train_local,
                                lr=self.config.lr, local_epochs=self.config.local_epochs)[0]
        return verdicts, f"{sum(verdicts)} of {count} pass"

    def _as_voter(self, verdicts: list[bool], proposals: list) -> list[bool]:
        """The ballot cast: a malicious voter votes against its own evidence (fl.attacks.behaviours)."""
        return voter_verdicts(verdicts, self.behaviour, [p.proposer for p in proposals])

    def reveal(self, round_id: int) -> None:
        ballot = self.state.ballot(round_id)
        if ballot is None:
            log.error("round %d: committed but the ballot is not in %s; cannot reveal (the stake will be slashed)",
                      round_id, self.state.folder)
            return
        accept_mask, parent_hash, salt = _ballot(ballot)
        self._send("reveal", round_id, self.ledger.reveal, round_id, accept_mask, parent_hash, salt,
                   detail={"accept_mask": hex(accept_mask)})

    def _too_late(self, round_id: int, action: str, deadline_of) -> bool:
        """True (and logged) if the deadline of `action` has passed: sending would only burn gas."""
        deadline = deadline_of(self.ledger.round(round_id))
        if int(self.clock()) < deadline:
            return False
        log.warning("round %d: too late to %s (deadline passed %d s ago); the stake will be slashed",
                    round_id, action, int(self.clock()) - deadline)
        return True

    # ------------------------------------------------------------ the model this client holds
    def held_model(self) -> tuple[bytes, dict | None]:
        """The model after the last round this client derived (the initial model before round 1):
        its hash and tensors (None if it cannot be loaded)."""
        text = self.state.data.get("global_hash") or ""
        h = bytes.fromhex(text) if self.state.data.get("adopted_round", 0) and text else self.initial_hash
        return h, self._load_model(h)

    def _load_model(self, h: bytes) -> dict | None:
        if h not in self._models:
            if h == self.initial_hash:
                self.store.put_state(self.initial_state)  # the initial model is known to everyone
                self._models[h] = self.initial_state
            else:
                try:
                    self._models[h] = self.store.load_update(h, self.initial_state)
                except (StoreError, OSError, ValueError):
                    return None
            while len(self._models) > 4:
                self._models.pop(next(iter(self._models)))
        return self._models[h]

    def catch_up(self, last_settled: int) -> None:
        """Derive and log every settled round up to `last_settled` this client has not derived yet."""
        adopted = self.state.data.get("adopted_round", 0)
        if adopted == 0 and last_settled > 1:
            # a fresh client: start from the latest round whose parent the voters confirmed
            for k in range(last_settled, 1, -1):
                view = self.ledger.round(k)
                if view.parent_confirmed and self._load_model(view.global_model_hash) is not None:
                    self.state.set_adopted(k - 1, view.global_model_hash)
                    log.info("joining after round %d: starting from the model its voters confirmed, %s",
                             k - 1, view.global_model_hash.hex()[:12])
                    break
        while self.state.data.get("adopted_round", 0) < last_settled:
            if not self.adopt(self.ledger.round(self.state.data.get("adopted_round", 0) + 1)):
                return

    def adopt(self, view) -> bool:
        """After round `view` settled: check the parent the voters confirmed against the model held,
        adopt the FedAvg of the accepted proposals (the parent if none), and log the outcome once.
        False if it cannot be derived yet (a blob missing from the store): tried again next poll."""
        r = view.round_id
        parent_hash, parent = self.held_model()
        check = "parent not confirmed (no voter majority)"
        if view.parent_confirmed:
            if view.global_model_hash == parent_hash:
                check = f"parent {parent_hash.hex()[:12]} confirmed by the voters"
            else:
                self._warn_once(("diverged", r), "round %d: the voters confirmed parent %s but this client held %s; "
                                "following the chain", r, view.global_model_hash.hex()[:12], parent_hash.hex()[:12])
                parent_hash, parent = view.global_model_hash, self._load_model(view.global_model_hash)
                check = f"parent {parent_hash.hex()[:12]} taken from the chain"
        if parent is None:
            self._warn_once(("parent", r), "round %d settled; its parent model %s is not in the store (yet)",
                            r, parent_hash.hex()[:12])
            return False
        proposals = self.ledger.proposals(r)
        accepted_flags = verdicts_from_mask(view.accepted_mask, len(proposals))
        accepted = []
        for p, ok in zip(proposals, accepted_flags):
            if not ok:
                continue
            try:
                accepted.append((self.store.load_update(p.update_hash, parent), p.sample_count))
            except (StoreError, OSError, ValueError) as exc:
                self._warn_once(("accepted", r), "round %d: accepted proposal %s of %s is unusable here (%s); "
                                "cannot derive the new model yet", r, p.update_hash.hex()[:12], p.proposer[:10],
                                _short(exc))
                return False
        model = fedavg(accepted) if accepted else parent
        model_hash = self.store.put_state(model) if accepted else parent_hash
        self._models[model_hash] = model
        accepts = self.ledger.proposal_accepts(r) if proposals else []
        for i, (p, ok) in enumerate(zip(proposals, accepted_flags)):
            log.info("round %d: proposal %d from %s %s (%s of %d voters accept)", r, i, p.proposer[:10],
                     "accepted" if ok else "rejected", accepts[i] if i < len(accepts) else "?", view.reveal_count)
        outcome = self.ledger.settlement_of(r, self.from_block)
        mine = ""
        if outcome is not None:
            won, slashed, rewarded = outcome
            mine = f"; me: {'won' if won else 'lost'}, slashed {_tokens(slashed)}, rewarded {_tokens(rewarded)}"
        stake = self.ledger.stake()
        log.info("round %d settled: %d of %d proposals accepted, %s, global model %s, validation %s %.4f, "
                 "stake %s%s", r, len(accepted), len(proposals), check, model_hash.hex()[:12], self.config.score,
                 self._score(model), _tokens(stake["stake"]), mine)
        self.state.set_adopted(r, model_hash)
        return True

    def _warn_once(self, key, message, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _score(self, state: dict) -> float:
        metrics = evaluate(load_state(self.template, state), self.data.val)
        return score(metrics, self.config.score)

    # ------------------------------------------------------------ sending
    def _send(self, action: str, round_id: int, method, *args, detail: dict | None = None) -> bool:
        """Send one transaction; a revert is logged and left for the next poll to re-read the chain.

        The journal gets a "sending" entry before and a "sent" / "reverted" / "waiting" (an opening
        before its seed block: retried at the next poll) entry after, so even a
        client killed while its transaction is in flight leaves a record of the attempt."""
        self.state.record(action, round_id, "", status="sending")
        try:
            tx = method(*args)
        except Exception as exc:  # noqa: BLE001
            if self.classify(exc) != "revert":
                raise
            if type(exc).__name__ == SEED_BLOCK_NOT_REACHED:  # read the head a block early: wait, retry
                self.state.record(action, round_id, "", status="waiting", reason=_short(exc))
                self._note_seed_block_wait(round_id, self.ledger.next_seed_block())
                return False
            self.state.record(action, round_id, "", status="reverted", reason=_short(exc))
            log.info("round %d: %s not done: %s (the chain moved on or another client did it)",
                     round_id, action, _short(exc))
            return False
        self.state.record(action, round_id, tx, status="sent", **(detail or {}))
        log.info("round %d: %s sent (tx %s)%s", round_id, action, tx[:12],
                 "".join(f" {k}={v if not isinstance(v, str) else v[:12]}" for k, v in (detail or {}).items()))
        return True


HOSTILE_BLOBS = ("directory", "oversized")
OVERSIZED_PADDING = 6 * 2**20  # float32 values: a 24 MB blob


def plant_hostile_blob(store: UpdateStore, update: dict, kind: str) -> bytes:
    """Test hook of a hostile proposer (``ape run client --test-hostile-blob``, local folder stores):
    the hash it will propose, with the store made hostile at that hash. "directory": a directory at
    the path of its update's blob; "oversized": a well-formed blob of its tensors plus a 24 MB extra one."""
    if kind == "directory":
        update_hash = hash_state(update)
        os.makedirs(store.blob_path(update_hash), exist_ok=True)
        return update_hash
    if kind == "oversized":
        return store.put_state({**update, "~padding": torch.zeros(OVERSIZED_PADDING)})
    raise ValueError(f"hostile blob must be one of {HOSTILE_BLOBS}, got {kind!r}")


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Sleep, but wake within 0.2 s of a stop request (SIGTERM during a long backoff)."""
    end = time.monotonic() + seconds
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.2, left))


def _ballot(ballot: dict) -> tuple[int, bytes, bytes]:
    return int(ballot["accept_mask"]), bytes.fromhex(ballot["parent_hash"]), bytes.fromhex(ballot["salt"])


def _ballot_text(verdicts: list[bool]) -> str:
    """'accept 0,2 reject 1' for a ballot over three proposals."""
    accepted = [str(i) for i, v in enumerate(verdicts) if v]
    rejected = [str(i) for i, v in enumerate(verdicts) if not v]
    return " ".join(part for part in (
        f"accept {','.join(accepted)}" if accepted else "", f"reject {','.join(rejected)}" if rejected else "")
        if part) or "empty"


def _tokens(units: int) -> str:
    return f"{units / TOKEN:g}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"
