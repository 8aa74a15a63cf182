"""The paper's baselines (Dong et al. 2024, Sec. 5.1.3), as plain functions with no chain.

- **FedAvg** (with or without attackers): the round loop of ``fl.simulation.rounds.run_protocol``
  over ``AcceptAllLedger``, a ledger in plain Python that draws proposers exactly as the
  contract does on a fresh development chain (``fl.protocol.draw.ContractDraw``: the same
  clients, the same seeds, so the same proposers as a protocol run of the same seed until the
  protocol removes someone) and accepts every aggregate. Same data, same model
  initialisation, same local training, same malicious proposers (``make_proposal``), same
  canonical FedAvg: the only difference from the protocol run is that nobody votes it down
  and nobody is slashed or removed. The new model is ``config.aggregator`` over every proposal
  (so the robust-aggregator baselines, "Krum" etc., are ``--aggregator`` runs of this ledger).
  With ``with_voters`` voters are still drawn and still review (their ballots are ignored), so
  the loop is literally the protocol's.
- **Oracle**: centralised training of the same model on all clients' training rows pooled
  (``FederatedData.central_train``), no attackers, with the task's training function. One
  Oracle round trains ``local_epochs`` epochs on a fresh random ``proposer_fraction`` share
  of the pooled rows: the same number of samples a FedAvg round's proposers train on, so
  after R rounds every row has been seen as often (in expectation) as in FedAvg. (Full
  epochs over all rows every round would be 5x the training and overfits the Lending Club
  MLP: test AUROC 0.75 after 8 epochs, 0.62 after 100.)

Both write nothing themselves: they return ``RoundRecord`` rows through ``on_round`` like
the protocol, so ``fl.simulation.recorder.RunRecorder`` gives every method the same run folder.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from fl.learning.data import FederatedData, Split
from fl.learning.model import evaluate, init_model, load_state, state_of, train_local
from fl.learning.store import UpdateStore, hash_state
from fl.protocol.draw import ContractDraw, simulated_client_address
from fl.protocol.params import ProtocolParams
from fl.protocol.votes import Decision, Proposal, RoundOpening, Settlement, mask_from_verdicts
from fl.simulation.rounds import (
    RoundRecord,
    SimulationConfig,
    ballot_salts,
    derived_seed,
    make_clients,
    run_protocol,
)

try:
    from fl.learning.tasks import task_of
except ImportError:  # before the task registry (fl.learning.tasks) exists: Lending Club only
    task_of = None

CHAINLESS_DRAW = "contract"  # recorded in a chainless run's config.json ("draw"): fl.protocol.draw's replay


def chainless_addresses(count: int) -> list[str]:
    """The simulated clients' addresses (what a protocol run's clients have: the draw mixes them in)."""
    return [simulated_client_address(i) for i in range(count)]


def initial_model_hash(config: SimulationConfig, data: FederatedData) -> bytes:
    """The hash of the round loop's initial global model (what VotingRound is deployed with)."""
    template = task_of(config).make_model(data, config.seed) if task_of is not None else init_model(data.num_features, config.seed)
    return hash_state(state_of(template))


class AcceptAllLedger:
    """A ``fl.simulation.rounds.Ledger`` with no contract: the contract's draw (replayed), every
    proposal accepted, nobody slashed or removed.

    With ``store`` given, no voters are handed to the round loop (their ballots would be ignored
    anyway, and reviewing on 40 validation splits is most of a round's time); the draw still
    accounts for their salts. The recorded hash is, as on chain, the parent hash the voters
    attested (all must agree), or the last one when no voter revealed.
    """

    total_gas = 0

    def __init__(self, addresses: list[str], proposer_fraction: float, seed: int, initial_model_hash: bytes,
                 store: UpdateStore | None = None, voting: str | None = None):
        self.addresses = list(addresses)
        # voting: the VotingRound whose draw to replay (default: the one a fresh development chain gets)
        self.draw = ContractDraw(self.addresses, initial_model_hash, ballot_salts(seed),
                                 ProtocolParams(proposer_fraction=proposer_fraction), voting=voting)
        self.store = store
        self.round_id = 0
        self._proposals: dict[int, list[Proposal]] = {}
        self._reveals: dict[int, list] = {}
        self._recorded = bytes(32)

    def open_round(self, caller=None) -> RoundOpening:
        self.round_id += 1
        proposers, voters = self.draw.next_round()
        return RoundOpening(self.round_id, proposers, [] if self.store is not None else voters)

    def propose(self, round_id: int, proposals) -> None:
        self._proposals[round_id] = [Proposal(a, h, n) for a, h, n in proposals]

    def proposals_of(self, round_id: int) -> list[Proposal]:
        return list(self._proposals.get(round_id, []))

    def commit(self, round_id: int, commits) -> None:
        pass

    def reveal(self, round_id: int, ballots) -> None:
        self._reveals[round_id] = list(ballots)

    def settle(self, round_id: int, caller=None) -> Settlement:
        ballots = self._reveals.get(round_id, [])
        parents = {b.parent_hash for b in ballots}
        if len(parents) > 1:
            raise RuntimeError(f"round {round_id}: voters attested {len(parents)} different parent models")
        if parents:
            self._recorded = parents.pop()
        count = len(self.proposals_of(round_id))
        return Settlement(
            round_id, Decision.ACCEPTED if count else Decision.REJECTED, self._recorded,
            mask_from_verdicts([True] * count), count, len(ballots),
        )

    def advance_to(self, timestamp: int) -> None:
        pass

    def pool_tokens(self) -> float:
        return 0.0


def run_fedavg(
    config: SimulationConfig,
    data: FederatedData,
    store: UpdateStore,
    on_round: Callable[[RoundRecord, dict], None] | None = None,
    with_voters: bool = False,
) -> list[RoundRecord]:
    """FedAvg with `config.malicious_ratio` malicious proposers and no protocol (ratio 0: clean).

    `with_voters` also draws voters who score and vote (ignored); the result is the same.
    """
    addresses = chainless_addresses(config.clients)
    clients = make_clients(data, addresses, config)
    ledger = AcceptAllLedger(addresses, config.proposer_fraction, config.seed, initial_model_hash(config, data),
                             store=None if with_voters else store)
    records, _ = run_protocol(config, data, clients, ledger, store, opener=None, on_round=on_round)
    return records


def run_oracle(
    config: SimulationConfig,
    data: FederatedData,
    on_round: Callable[[RoundRecord, dict], None] | None = None,
) -> list[RoundRecord]:
    """Centralised training on the pooled training rows, no attackers, `config.rounds` rounds."""
    central = data.central_train()
    if task_of is None:  # lending only: fl.learning.model's MLP, training and evaluation
        template, train, test = init_model(data.num_features, config.seed), train_local, evaluate
    else:  # the task's model, training and evaluation (the same as run_protocol's)
        task = task_of(config)
        template, train, test = task.make_model(data, config.seed), task.train, task.evaluate
    state = state_of(template)
    share = max(1, round(len(central) * config.proposer_fraction))
    records = []
    for r in range(1, config.rounds + 1):
        started = time.perf_counter()
        rows = torch.randperm(len(central), generator=torch.Generator().manual_seed(derived_seed(config.seed, r, -2)))
        batch = Split(X=central.X[rows[:share]], y=central.y[rows[:share]])
        state = train(
            load_state(template, state), batch, epochs=config.local_epochs, lr=config.lr,
            seed=derived_seed(config.seed, r, -1),
        )
        metrics = test(load_state(template, state), data.test)
        record = RoundRecord(
            round=r, decision="accepted", accept_votes=0, reject_votes=0, revealed_votes=0,
            proposers=1, malicious_proposers=0, voters=0, malicious_voters=0, removed_this_round=0,
            test_accuracy=metrics.accuracy, test_balanced_accuracy=metrics.balanced_accuracy,
            test_auroc=metrics.auroc, active_honest=config.clients, active_malicious=0,
            mean_tokens_honest=float("nan"), mean_tokens_malicious=float("nan"),
            mean_tokens_honest_proposers=float("nan"), mean_tokens_malicious_proposers=float("nan"),
            pool_tokens=0.0, gas=0, seconds=time.perf_counter() - started,
            global_model_hash="0x" + hash_state(state).hex(),
        )
        records.append(record)
        if on_round:
            on_round(record, {})
    return records
