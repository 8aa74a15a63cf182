"""The federated round of Dong et al. (IEEE TAI 2024), read top-down.

One round: the ledger (the contracts) opens a round and draws proposers and voters; each
proposer trains from the global model and publishes its update to the content-addressed
store and its hash on chain; each voter fetches every proposal, checks it against its hash,
reviews EACH proposal with the review rule (`config.review`, fl/defences/voter_review.py; the
paper's rule `aggregate` scores the FedAvg of all proposals and casts one verdict for all) and
commits, then reveals, its ballot (a bit mask over the proposals) and the parent hash (the hash of
the model the round started from); the ledger settles each proposal on its own and records the
parent hash a voter majority attested. The clients' new global model is `config.aggregator`
(default FedAvg, bit-exact) over the ACCEPTED proposals, or the old model if none was accepted;
so the hash on chain lags one round behind it (notes: PROTOCOL_V2).

`run_protocol` drives that loop against a ledger (``fl.chain.ledger.ProtocolChain``); nothing here
imports Ape. fl.simulation.baselines runs the same loop over an accept-everything ledger (plain FedAvg,
no protocol) and the centralised Oracle, for the paper's baselines.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from fl.defences.aggregate import fedavg
from fl.defences.aggregators import AGGREGATORS
from fl.defences.review import ReviewInputs, review
from fl.defences.voter_review import RULES as REVIEW_RULES, VoterView, review_round, rule_named
from fl.attacks.behaviours import (
    IMAGE_ONLY_ATTACKS, MALICIOUS_ROLES, PROPOSER_ATTACKS, VOTER_ATTACKS, Behaviour, Proposer, assign_malicious,
    backdoor_success_rate, behaviour_for, make_round_proposals, voter_verdicts,
)
from fl.learning.data import ClientData, FederatedData, load_lending_club, make_federated_data
from fl.learning.model import evaluate, init_model, load_state, score
from fl.learning.store import StoreError, UpdateStore, hash_state
from fl.learning.tasks import task_of
from fl.protocol.params import TOKEN
from fl.protocol.votes import Ballot, mask_from_verdicts

ZERO_HASH = bytes(32)
TASKS = ("lending", "fmnist", "chestxray")


@dataclass
class SimulationConfig:
    """Every knob of a run. Stakes and rewards in whole tokens, epsilon in score units."""

    clients: int = 50
    malicious_ratio: float = 0.2
    rounds: int = 100
    proposer_fraction: float = 0.2
    stake: float = 64.0
    proposer_stake: float = 8.0
    voter_stake: float = 4.0
    proposer_reward: float = 2.0
    epsilon: float = 0.01
    local_epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    score: str = "accuracy"
    malicious_roles: str = "both"  # which roles malicious clients attack in: proposer | voter | both
    attack: str = "label_flip"  # what a malicious proposer submits (fl.attacks.behaviours.PROPOSER_ATTACKS)
    voter_attack: str = "against_evidence"  # how a malicious voter votes (VOTER_ATTACKS)
    seed: int = 0
    data_file: str | None = None
    task: str = "lending"  # lending (tabular MLP) | fmnist (non-IID images, CNN) | chestxray
    dirichlet_alpha: float = 0.5  # label concentration of the non-IID image split (inf = IID)
    samples_per_client: int = 200  # image tasks: training + validation images per client
    model: str = "cnn"  # image tasks: cnn | densenet121 (needs torchvision)
    review: str = "cosine_floor"  # the voters' review rule (fl.defences.voter_review.RULES); "aggregate" = the paper's
    aggregator: str = "fedavg"  # the new global model over the accepted proposals (fl.defences.aggregators)

    def validate(self) -> None:
        checks = [
            (self.clients >= 3, "clients must be at least 3"),
            (0.0 <= self.malicious_ratio < 1.0, "malicious ratio must be in [0, 1)"),
            (self.rounds >= 1, "rounds must be at least 1"),
            (0.0 < self.proposer_fraction < 1.0, "proposer fraction must be in (0, 1)"),
            (self.stake > 0, "stake must be positive"),
            (self.proposer_stake > 0 and self.voter_stake > 0, "proposer and voter stakes must be positive"),
            (self.proposer_reward >= 0, "proposer reward must not be negative"),
            (self.epsilon >= 0, "epsilon must not be negative"),
            (self.local_epochs >= 1, "local epochs must be at least 1"),
            (self.lr > 0, "learning rate must be positive"),
            (self.score in ("accuracy", "balanced_accuracy", "auroc"), "score must be accuracy, balanced_accuracy or auroc"),
            (self.malicious_roles in MALICIOUS_ROLES, "malicious roles must be proposer, voter or both"),
            (self.attack in PROPOSER_ATTACKS, f"attack must be one of {', '.join(PROPOSER_ATTACKS)}"),
            (self.voter_attack in VOTER_ATTACKS, f"voter attack must be one of {', '.join(VOTER_ATTACKS)}"),
            (self.attack not in IMAGE_ONLY_ATTACKS or self.task != "lending",
             f"attack {self.attack} needs an image task (fmnist)"),
            (self.task in TASKS, f"task must be one of {', '.join(TASKS)}"),
            (self.dirichlet_alpha > 0, "dirichlet alpha must be positive"),
            (self.samples_per_client >= 2, "samples per client must be at least 2"),
            (self.model in ("cnn", "densenet121"), "model must be cnn or densenet121"),
            (self.review in REVIEW_RULES, f"review must be one of {', '.join(REVIEW_RULES)}"),
            (self.aggregator in AGGREGATORS, f"aggregator must be one of {', '.join(AGGREGATORS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class SimClient:
    index: int
    address: str
    data: ClientData
    malicious: bool
    behaviour: Behaviour


@dataclass
class RoundRecord:
    round: int
    decision: str
    accept_votes: int
    reject_votes: int
    revealed_votes: int
    proposers: int
    malicious_proposers: int
    voters: int
    malicious_voters: int
    removed_this_round: int
    test_accuracy: float
    test_balanced_accuracy: float
    test_auroc: float
    active_honest: int
    active_malicious: int
    mean_tokens_honest: float
    mean_tokens_malicious: float
    mean_tokens_honest_proposers: float
    mean_tokens_malicious_proposers: float
    pool_tokens: float
    gas: int
    seconds: float
    global_model_hash: str
    # per-proposal review (issue 11); accept_votes / reject_votes above count the uniform ballots
    # (accept every proposal / reject every proposal), which for the paper's rule are all of them
    proposals: int = 0
    accepted_proposals: int = 0
    honest_accepted: int = 0
    honest_rejected: int = 0
    malicious_accepted: int = 0
    malicious_rejected: int = 0
    removed_honest: int = 0
    removed_malicious: int = 0
    parent_model_hash: str = ""  # the model this round started from (what its voters attested)
    recorded_model_hash: str = ""  # what the chain recorded at this settlement
    attack_success_rate: float = float("nan")  # backdoor runs: triggered test images classified as the target


class Ledger(Protocol):
    """What the round loop needs from the chain (fl.chain.ledger.ProtocolChain implements it)."""

    def open_round(self, caller): ...
    def propose(self, round_id: int, proposals) -> None: ...
    def commit(self, round_id: int, commits) -> None: ...
    def reveal(self, round_id: int, reveals) -> None: ...
    def settle(self, round_id: int, caller): ...
    def advance_to(self, timestamp: int) -> None: ...
    def proposals_of(self, round_id: int): ...
    def pool_tokens(self) -> float: ...

    total_gas: int


def load_federated_data(config: SimulationConfig) -> FederatedData:
    """The clients' data and the global test set of `config.task` (the protocol and the
    baselines of fl.simulation.baselines load through here, so they train on the same splits)."""
    if config.task != "lending":
        return task_of(config).load(config)
    return make_federated_data(load_lending_club(config.data_file), config.clients, config.seed)


def make_clients(data: FederatedData, addresses: Sequence[str], config: SimulationConfig) -> list[SimClient]:
    flags = assign_malicious(config.clients, config.malicious_ratio, config.seed)
    bloc = [addresses[i] for i in range(config.clients) if flags[i]]
    return [
        SimClient(i, addresses[i], data.clients[i], flags[i],
                  behaviour_for(flags[i], config.malicious_roles, config.attack, config.voter_attack, bloc))
        for i in range(config.clients)
    ]


def derived_seed(*parts: int) -> int:
    """A reproducible seed for one (run, round, client) computation."""
    return random.Random(repr(parts)).getrandbits(31)


def ballot_salts(seed: int) -> random.Random:
    """The run's stream of ballot salts: one getrandbits(256) per voter and round, in draw order
    (the chainless ledger replays it: the salts feed the next round's draw)."""
    return random.Random(derived_seed(seed, 7))


class AggregateCache:
    """FedAvg of one round's proposals, computed once and shared by the voters of this process.

    Sharing is sound because `fedavg` is bit-exact and order-independent: every voter that
    fetched the same verified blobs computes the same bytes (tests/fl check this against
    per-voter recomputation). A failed blob check is shared too: the blobs are the same.
    """

    def __init__(self, store: UpdateStore):
        self.store = store
        self._cache: dict[tuple, tuple[dict | None, bytes, str]] = {}

    def get(self, proposals, reference: dict) -> tuple[dict | None, bytes, str]:
        key = tuple((p.update_hash, p.sample_count) for p in proposals)
        if key not in self._cache:
            self._cache[key] = build_aggregate(self.store, proposals, reference)
        return self._cache[key]


def build_aggregate(store: UpdateStore, proposals, reference: dict) -> tuple[dict | None, bytes, str]:
    """Fetch and verify every proposal, then FedAvg them. Returns (aggregate, hash, problem)."""
    if not proposals:
        return None, ZERO_HASH, "no proposals"
    updates = []
    for p in proposals:
        try:
            updates.append((store.load_update(p.update_hash, reference), p.sample_count))
        except (StoreError, ValueError) as exc:
            return None, ZERO_HASH, f"proposal {p.update_hash.hex()[:12]} from {p.proposer}: {exc}"
    aggregate = fedavg(updates)
    return aggregate, hash_state(aggregate), ""


class ScoreCache:
    """A voter's score of a model on its own validation split, keyed by (model hash, client)."""

    def __init__(self, template, score_name: str, evaluate=evaluate):
        self.template = template
        self.score_name = score_name
        self.evaluate = evaluate  # the task's evaluation (fl.learning.model.evaluate for lending)
        self._cache: dict[tuple[bytes, int], float] = {}
        self._models: dict[bytes, object] = {}  # hash -> model, the few scored last (oldest first)

    def get(self, model_hash: bytes, state: dict, client: SimClient) -> float:
        key = (model_hash, client.index)
        if key not in self._cache:
            if self.evaluate is evaluate and self.score_name == "accuracy":
                # One model object per hash for every voter: evaluation only reads it (eval mode,
                # no_grad, mode restored), so each score equals one computed on a fresh copy.
                model = self._models.get(model_hash)
                if model is None:
                    model = self._models[model_hash] = load_state(self.template, state)
                    while len(self._models) > 4:  # a round scores the current model and the aggregate
                        self._models.pop(next(iter(self._models)))
                self._cache[key] = exact_accuracy(model, client.data.val)  # the same number, without sklearn
            else:
                self._cache[key] = score(self.evaluate(load_state(self.template, state), client.data.val), self.score_name)
        return self._cache[key]


def exact_accuracy(model, split) -> float:
    """``fl.learning.model.evaluate(model, split).accuracy``, computed the same way (same forward pass,
    sigmoid >= 0.5 on the float32 logits, correct / total as one float division) without the
    other metrics: a voter needs only its score, and sklearn's checks cost ~10x the forward
    pass on a client's few dozen rows. tests/chain/test_txpath.py checks equality."""
    from fl.learning.model import DECISION_THRESHOLD

    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(split.X).to(torch.float32)
    model.train(was_training)
    predicted = (torch.sigmoid(logits) >= DECISION_THRESHOLD).to(torch.int64)
    return int((predicted == split.y.to(torch.int64)).sum()) / len(split.y)


@dataclass
class RunState:
    """What the clients collectively know between rounds (tokens are read back from events)."""

    global_state: dict
    global_hash: bytes
    tokens: dict[str, int]  # stake in the token's smallest unit, from settlement events
    active: dict[str, bool]
    ever_proposed: set[str] = field(default_factory=set)
    pool_tokens: float = 0.0


def run_protocol(
    config: SimulationConfig,
    data: FederatedData,
    clients: list[SimClient],
    ledger: Ledger,
    store: UpdateStore,
    opener,
    on_round: Callable[[RoundRecord, dict], None] | None = None,
) -> tuple[list[RoundRecord], RunState]:
    """Run `config.rounds` rounds of the full protocol. Returns the records and the final state.

    `on_round(record, extra)` is called after every settled round (the recorder writes files
    there, so an interrupted run keeps every finished round).
    """
    task = task_of(config)
    template = task.make_model(data, config.seed)
    initial = {k: v.detach().clone() for k, v in template.state_dict().items()}
    run = RunState(
        global_state=initial,
        global_hash=store.put_state(initial),
        tokens={c.address: round(config.stake * TOKEN) for c in clients},
        active={c.address: True for c in clients},
    )
    by_address = {c.address: c for c in clients}
    salts = ballot_salts(config.seed)
    aggregates = AggregateCache(store)
    scores = ScoreCache(template, task.score_name(config), task.evaluate)
    rule = rule_named(config.review)
    records: list[RoundRecord] = []

    for _ in range(config.rounds):
        if sum(run.active.values()) < 2:
            break
        started = time.perf_counter()
        gas_before = ledger.total_gas

        # 1. Open: the contract draws proposers and voters and removes those who cannot stake.
        opening = ledger.open_round(opener)
        r = opening.round_id
        for address in opening.removed:
            run.active[address] = False
        run.ever_proposed.update(opening.proposers)

        # 2. Propose: train from the global model, publish bytes to the store and the hash on chain.
        drawn = [by_address[address] for address in opening.proposers]
        updates = make_round_proposals(
            run.global_state,
            [Proposer(c.data.train, c.behaviour, derived_seed(config.seed, r, c.index)) for c in drawn],
            epochs=config.local_epochs,
            lr=config.lr,
            num_features=data.num_features,
            template=template,
            train=task.train,
        )
        proposals = [(c.address, store.put_state(u), len(c.data.train.y)) for c, u in zip(drawn, updates)]
        ledger.propose(r, proposals)
        ledger.advance_to(opening.proposal_deadline)

        # 3-5. Review each proposal; commit, then reveal after the commit deadline.
        onchain = ledger.proposals_of(r)
        states = fetch_proposals(store, onchain, run.global_state)
        parent_hash = run.global_hash
        honest = honest_verdicts(
            config, rule, onchain, states, opening.voters, by_address, run, template, task, scores, aggregates, r
        )
        proposer_list = [p.proposer for p in onchain]
        ballots = []
        for address, verdicts in zip(opening.voters, honest, strict=True):
            client = by_address[address]
            ballot = voter_verdicts(verdicts, client.behaviour, proposer_list)
            salt = salts.getrandbits(256).to_bytes(32, "big")
            ballots.append(Ballot(address, mask_from_verdicts(ballot), parent_hash, salt))
        ledger.commit(r, [(b.voter, b.commitment(r)) for b in ballots])
        ledger.advance_to(opening.commit_deadline)
        ledger.reveal(r, ballots)
        ledger.advance_to(opening.reveal_deadline)

        # 6-7. Settle; the clients' new model is the aggregator over the accepted proposals.
        settlement = ledger.settle(r, opener)
        accepted = settlement.accepted(len(onchain))
        problem = adopt_accepted(run, config, states, onchain, accepted, store)
        for address, (_, _, slashed, rewarded) in settlement.outcomes.items():
            run.tokens[address] += rewarded - slashed
        run.pool_tokens = ledger.pool_tokens()

        model = load_state(template, run.global_state)
        metrics = task.evaluate(model, data.test)
        record = summarise_round(
            r, settlement, opening, clients, run, metrics, ledger.total_gas - gas_before, started
        )
        poisoned = [by_address[p.proposer].behaviour.malicious_proposer for p in onchain]
        malicious_set = {c.address for c in clients if c.malicious}
        record.proposals = len(onchain)
        record.accepted_proposals = sum(accepted)
        record.honest_accepted = sum(a and not m for a, m in zip(accepted, poisoned))
        record.honest_rejected = sum(not a and not m for a, m in zip(accepted, poisoned))
        record.malicious_accepted = sum(a and m for a, m in zip(accepted, poisoned))
        record.malicious_rejected = sum(not a and m for a, m in zip(accepted, poisoned))
        record.removed_malicious = sum(a in malicious_set for a in opening.removed)
        record.removed_honest = len(opening.removed) - record.removed_malicious
        record.parent_model_hash = "0x" + parent_hash.hex()
        record.recorded_model_hash = "0x" + settlement.global_model_hash.hex()
        record.accept_votes = sum(b.accept_mask == (1 << len(onchain)) - 1 for b in ballots if onchain)
        record.reject_votes = sum(b.accept_mask == 0 for b in ballots)
        if config.attack == "backdoor":
            record.attack_success_rate = backdoor_success_rate(model, data.test)
        records.append(record)
        if on_round:
            on_round(record, {"problem": problem, "tokens": dict(run.tokens), "accepted": accepted})
    return records, run


def fetch_proposals(store: UpdateStore, proposals, reference: dict) -> list[dict | None]:
    """Each proposal's verified state from the store (None: missing, tampered with or malformed)."""
    states = []
    for p in proposals:
        try:
            states.append(store.load_update(p.update_hash, reference))
        except (StoreError, ValueError, OSError):
            states.append(None)
    return states


def honest_verdicts(config, rule, proposals, states, voters, by_address, run, template, task, scores, aggregates, r):
    """Every voter's honest verdicts on the round's proposals (before any malicious inversion)."""
    count = len(proposals)
    if rule.policy == "aggregate":  # the paper's voter: the aggregate of ALL proposals vs the global model
        aggregate, aggregate_hash, _ = aggregates.get(proposals, run.global_state)
        out = []
        for address in voters:
            client = by_address[address]
            current = scores.get(run.global_hash, run.global_state, client)
            # A proposal that is missing, tampered with or malformed makes the aggregate unusable.
            candidate = float("-inf") if aggregate is None else scores.get(aggregate_hash, aggregate, client)
            inputs = ReviewInputs(count, aggregate_score=candidate, global_score=current)
            out.append(review("aggregate", inputs, epsilon=config.epsilon))
        return out
    views = [
        VoterView(by_address[a].data.val, by_address[a].data.train, derived_seed(config.seed, r, by_address[a].index, 11))
        for a in voters
    ]
    return review_round(
        rule, template, run.global_state, states, [p.sample_count for p in proposals], views, train=task.train,
        lr=config.lr, local_epochs=config.local_epochs,
    )


def aggregate_accepted(name: str, updates: list[tuple[dict, int]], reference: dict, malicious_ratio: float) -> dict:
    """`AGGREGATORS[name]` over the accepted (state, count) pairs. The rule is told to tolerate
    f = floor(malicious_ratio * n) Byzantine inputs, lowered to the largest f it admits for n."""
    f = int(malicious_ratio * len(updates))
    while True:
        try:
            return AGGREGATORS[name](updates, reference, num_byzantine=f)
        except ValueError:
            if f == 0:
                raise
            f -= 1


def adopt_accepted(run: RunState, config, states, proposals, accepted: list[bool], store) -> str:
    """Make the clients' global model the aggregator over the accepted proposals (unchanged if
    none). Returns a problem message, or "" (an accepted proposal nobody can load is left out)."""
    chosen = [(s, p.sample_count) for s, p, a in zip(states, proposals, accepted) if a and s is not None]
    problem = ""
    if sum(accepted) > len(chosen):
        problem = f"{sum(accepted) - len(chosen)} accepted proposal(s) could not be loaded"
    if not chosen:
        return problem
    try:
        new_state = aggregate_accepted(config.aggregator, chosen, run.global_state, config.malicious_ratio)
    except ValueError as exc:
        return f"{config.aggregator} failed on the accepted proposals: {exc}"
    run.global_state = new_state
    run.global_hash = store.put_state(new_state)  # late joiners and restarted clients fetch it here
    return problem


def _mean(units) -> float:
    """Mean of stakes given in token units, in whole tokens."""
    units = list(units)
    return sum(units) / len(units) / TOKEN if units else float("nan")


def summarise_round(r, settlement, opening, clients, run: RunState, metrics, gas, started) -> RoundRecord:
    honest = [c for c in clients if not c.malicious]
    malicious = [c for c in clients if c.malicious]
    malicious_set = {c.address for c in malicious}
    return RoundRecord(
        round=r,
        decision=settlement.decision.name.lower(),
        accept_votes=0,  # set by the round loop from the ballots
        reject_votes=0,
        revealed_votes=settlement.revealed_votes,
        proposers=len(opening.proposers),
        malicious_proposers=sum(a in malicious_set for a in opening.proposers),
        voters=len(opening.voters),
        malicious_voters=sum(a in malicious_set for a in opening.voters),
        removed_this_round=len(opening.removed),
        test_accuracy=metrics.accuracy,
        test_balanced_accuracy=metrics.balanced_accuracy,
        test_auroc=metrics.auroc,
        active_honest=sum(run.active[c.address] for c in honest),
        active_malicious=sum(run.active[c.address] for c in malicious),
        mean_tokens_honest=_mean(run.tokens[c.address] for c in honest),
        mean_tokens_malicious=_mean(run.tokens[c.address] for c in malicious),
        mean_tokens_honest_proposers=_mean(run.tokens[a] for a in run.ever_proposed if a not in malicious_set),
        mean_tokens_malicious_proposers=_mean(run.tokens[a] for a in run.ever_proposed if a in malicious_set),
        pool_tokens=run.pool_tokens,
        gas=gas,
        seconds=time.perf_counter() - started,
        global_model_hash="0x" + run.global_hash.hex(),
    )
