"""One decentralised participant: what `ape run client` decides, round after round (no Ape import).

Nobody coordinates. Every client polls the chain and acts on what it reads there:

- the latest round is settled (or there is none yet): open the next one, if this client's
  turn has come (the active clients take turns, see `turn_delay`);
- it is selected as a proposer and the round is proposing: train from the global model,
  put the update in the shared store, propose its hash;
- it is selected as a voter and proposing is over: fetch every proposal, rebuild the FedAvg
  aggregate, score it against the global model on its own validation split, write the
  ballot (vote, aggregate hash, salt) to its state folder, then commit; after the commit
  deadline reveal the saved ballot;
- the reveal deadline has passed: settle, if this client's turn has come;
- after a settlement: adopt the model whose hash the chain recorded, fetched from the store.

Restart-safety: the chain says what was done (the participant flags `acted` / `revealed`
and the round's `settled`), the state folder keeps what only the client knows (the salted
ballot, written and flushed *before* the commit is sent), so a restarted client never
sends a second proposal or commit and can still reveal. Every transaction is also
journalled in ``journal.jsonl`` in the state folder ("sending" before, "sent" or "reverted" after).

The ledger (``fl.chain.participant_ledger.ParticipantLedger``) is passed in, with a function
that classifies its exceptions as "revert" (the contract said no: re-read the chain, try later) or
"transient" (the node is unreachable: retry with backoff).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from typing import Callable

from fl.attacks.behaviours import behaviour_for, decide_vote, make_proposal
from fl.learning.data import ClientData, Split
from fl.learning.model import evaluate, init_model, load_state, score, state_of
from fl.simulation.rounds import build_aggregate, derived_seed
from fl.learning.store import StoreError, UpdateStore, hash_state
from fl.participant.state import ClientConfig, ClientState, ParticipantError
from fl.protocol.votes import Role, RoundState, Vote, commitment_for

log = logging.getLogger("stakefl.client")
TOKEN_UNITS = 10**18


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
        self.me = ledger.address
        self._models: dict[bytes, dict] = {}
        self._turn_started: dict[tuple[str, int], float] = {}
        self.done = False
        self.leaving = False
        self._missing_warned = 0

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
        amount = round(self.config.stake * TOKEN_UNITS)
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
            if view is not None:
                self.adopt(view)
            if self.config.until_round is not None and r >= self.config.until_round and not self.leaving:
                log.info("round %d settled; --until-round reached, stopping", r)
                self.done = True
                return
            if self._check_still_active() and not self.leaving:
                self.maybe_open(r)
            return
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
        if self._my_turn("open", last_round + 1):
            self._send("open", last_round + 1, self.ledger.open_round)

    def maybe_settle(self, round_id: int) -> None:
        if self._my_turn("settle", round_id):
            self._send("settle", round_id, self.ledger.settle, round_id)

    # ------------------------------------------------------------ proposing
    def propose(self, round_id: int) -> None:
        global_hash, global_state = self.global_model()
        if global_state is None:
            if self._missing_warned != -round_id:
                log.error("round %d: cannot fetch the global model %s from the store; cannot propose",
                          round_id, global_hash.hex()[:12])
                self._missing_warned = -round_id
            return
        update = make_proposal(
            global_state, self.data.train, self.behaviour, epochs=self.config.local_epochs,
            lr=self.config.lr, seed=derived_seed(self.config.seed, round_id, int(self.me, 16) % 2**31),
            num_features=self.data.train.X.shape[1],
        )
        update_hash = self.store.put_state(update)
        samples = len(self.data.train)
        if self._too_late(round_id, "propose", lambda v: v.proposal_deadline):
            return
        kind = "poisoned" if self.behaviour.malicious_proposer else "honest"
        self._send("propose", round_id, self.ledger.propose, round_id, update_hash, samples,
                   detail={"update": update_hash.hex(), "samples": samples, "kind": kind})

    # ------------------------------------------------------------ voting
    def commit(self, round_id: int) -> None:
        ballot = self.state.ballot(round_id)
        if ballot is None:
            vote, aggregate_hash = self.decide(round_id)
            salt = secrets.token_bytes(32)
            # the ballot is on disk before the commit is sent: a restart can always reveal
            self.state.save_ballot(round_id, vote, aggregate_hash, salt)
        else:  # decided before a restart: commit the very same ballot
            vote, aggregate_hash, salt = _ballot(ballot)
        commitment = commitment_for(round_id, self.me, vote, aggregate_hash, salt)
        if self._too_late(round_id, "commit", lambda v: v.commit_deadline):
            return
        self._send("commit", round_id, self.ledger.commit, round_id, commitment,
                   detail={"vote": vote.name.lower(), "aggregate": aggregate_hash.hex()})

    def decide(self, round_id: int) -> tuple[Vote, bytes]:
        global_hash, global_state = self.global_model()
        proposals = self.ledger.proposals(round_id)
        reference = global_state if global_state is not None else self.initial_state
        aggregate, aggregate_hash, problem = build_aggregate(self.store, proposals, reference)
        if global_state is None or aggregate is None:
            reason = problem or f"global model {global_hash.hex()[:12]} missing from the store"
            accept = decide_vote(float("-inf"), 0.0, self.config.epsilon, self.behaviour)
            log.info("round %d: aggregate unusable (%s)", round_id, reason)
            current = candidate = float("nan")
        else:
            self.store.put_state(aggregate)  # the next proposers fetch the global model from here
            current = self._score(global_state)
            candidate = self._score(aggregate)
            accept = decide_vote(candidate, current, self.config.epsilon, self.behaviour)
        vote = Vote.ACCEPT if accept else Vote.REJECT
        log.info("round %d: %d proposals, aggregate %s scores %.4f vs global %.4f -> %s%s",
                 round_id, len(proposals), aggregate_hash.hex()[:12], candidate, current, vote.name.lower(),
                 " (malicious: against the evidence)" if self.behaviour.malicious_voter else "")
        return vote, aggregate_hash

    def reveal(self, round_id: int) -> None:
        ballot = self.state.ballot(round_id)
        if ballot is None:
            log.error("round %d: committed but the ballot is not in %s; cannot reveal (the stake will be slashed)",
                      round_id, self.state.folder)
            return
        vote, aggregate_hash, salt = _ballot(ballot)
        self._send("reveal", round_id, self.ledger.reveal, round_id, vote, aggregate_hash, salt,
                   detail={"vote": vote.name.lower()})

    def _too_late(self, round_id: int, action: str, deadline_of) -> bool:
        """True (and logged) if the deadline of `action` has passed: sending would only burn gas."""
        deadline = deadline_of(self.ledger.round(round_id))
        if int(self.clock()) < deadline:
            return False
        log.warning("round %d: too late to %s (deadline passed %d s ago); the stake will be slashed",
                    round_id, action, int(self.clock()) - deadline)
        return True

    # ------------------------------------------------------------ the global model
    def global_model(self) -> tuple[bytes, dict | None]:
        """The chain's current global model hash and its tensors from the store (None if missing)."""
        h = self.ledger.global_model_hash()
        if h not in self._models:
            try:
                self._models[h] = self.store.load_update(h, self.initial_state)
            except StoreError:
                if h != hash_state(self.initial_state):
                    return h, None
                self.store.put_state(self.initial_state)  # the initial model is known to everyone
                self._models[h] = self.initial_state
            except ValueError:
                return h, None
        return h, self._models[h]

    def adopt(self, view) -> None:
        """After a settlement: take the model whose hash the chain recorded; log the outcome once."""
        if self.state.data.get("adopted_round", 0) >= view.round_id:
            return
        h, model = self.global_model()
        if model is None:
            if self._missing_warned != view.round_id:
                log.warning("round %d settled with model %s, not (yet) in the store", view.round_id, h.hex()[:12])
                self._missing_warned = view.round_id
            return
        outcome = self.ledger.settlement_of(view.round_id, self.from_block)
        stake = self.ledger.stake()
        mine = ""
        if outcome is not None:
            won, slashed, rewarded = outcome
            mine = f"; me: {'won' if won else 'lost'}, slashed {_tokens(slashed)}, rewarded {_tokens(rewarded)}"
        log.info("round %d settled: %s, global model %s, validation %s %.4f, stake %s%s",
                 view.round_id, view.decision.name.lower(), h.hex()[:12], self.config.score,
                 self._score(model), _tokens(stake["stake"]), mine)
        self.state.set_adopted(view.round_id, h)

    def _score(self, state: dict) -> float:
        metrics = evaluate(load_state(self.template, state), self.data.val)
        return score(metrics, self.config.score)

    # ------------------------------------------------------------ sending
    def _send(self, action: str, round_id: int, method, *args, detail: dict | None = None) -> bool:
        """Send one transaction; a revert is logged and left for the next poll to re-read the chain.

        The journal gets a "sending" entry before and a "sent" / "reverted" entry after, so even a
        client killed while its transaction is in flight leaves a record of the attempt."""
        self.state.record(action, round_id, "", status="sending")
        try:
            tx = method(*args)
        except Exception as exc:  # noqa: BLE001
            if self.classify(exc) != "revert":
                raise
            self.state.record(action, round_id, "", status="reverted", reason=_short(exc))
            log.info("round %d: %s not done: %s (the chain moved on or another client did it)",
                     round_id, action, _short(exc))
            return False
        self.state.record(action, round_id, tx, status="sent", **(detail or {}))
        log.info("round %d: %s sent (tx %s)%s", round_id, action, tx[:12],
                 "".join(f" {k}={v if not isinstance(v, str) else v[:12]}" for k, v in (detail or {}).items()))
        return True


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Sleep, but wake within 0.2 s of a stop request (SIGTERM during a long backoff)."""
    end = time.monotonic() + seconds
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.2, left))


def _ballot(ballot: dict) -> tuple[Vote, bytes, bytes]:
    return Vote(ballot["vote"]), bytes.fromhex(ballot["aggregate_hash"]), bytes.fromhex(ballot["salt"])


def _tokens(units: int) -> str:
    return f"{units / TOKEN_UNITS:g}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"
