"""The round loop with per-proposal ballots (fl/simulation/rounds.py), over a ledger in plain
Python that tallies ballots as PROTOCOL_V2 does (no chain: fast, and every input is hand-built)."""
import math

import pytest
import torch
from eth_utils import to_checksum_address

from fl.defences.aggregate import fedavg
from fl.learning.data import load_lending_club, make_federated_data
from fl.learning.store import UpdateStore, hash_state
from fl.learning.tasks import task_of
from fl.protocol.votes import Decision, Proposal, RoundOpening, Settlement, mask_from_verdicts, verdicts_from_mask
from fl.simulation.rounds import SimulationConfig, make_clients, run_protocol
from fl.simulation.runner import review_summary


class BallotLedger:
    """Fixed draw (proposers, then voters, in address order); per-proposal majority of the
    revealed ballots; the recorded hash = the parent hash a strict majority attested."""

    total_gas = 0

    def __init__(self, addresses, proposers, store, poison=None):
        self.addresses, self.k, self.store, self.poison = list(addresses), proposers, store, poison
        self.round_id, self.recorded = 0, bytes(32)
        self.proposals, self.ballots, self.states = {}, {}, {}

    def open_round(self, caller=None):
        self.round_id += 1
        return RoundOpening(self.round_id, self.addresses[:self.k], self.addresses[self.k:])

    def propose(self, round_id, proposals):
        proposals = list(proposals)
        if self.poison is not None:
            proposals = self.poison(self, proposals)
        self.proposals[round_id] = [Proposal(a, h, n) for a, h, n in proposals]

    def proposals_of(self, round_id):
        return list(self.proposals[round_id])

    def commit(self, round_id, commits):
        self.commitments = dict(commits)

    def reveal(self, round_id, ballots):
        ballots = list(ballots)
        assert all(self.commitments[b.voter] == b.commitment(round_id) for b in ballots)
        self.ballots[round_id] = ballots

    def settle(self, round_id, caller=None):
        ballots, count = self.ballots[round_id], len(self.proposals[round_id])
        accepts = [sum(verdicts_from_mask(b.accept_mask, count)[i] for b in ballots) for i in range(count)]
        accepted = [2 * a > len(ballots) for a in accepts]
        parents = [b.parent_hash for b in ballots]
        leader = max(set(parents), key=parents.count) if parents else None
        if leader is not None and 2 * parents.count(leader) > len(ballots):
            self.recorded = leader
        return Settlement(round_id, Decision.ACCEPTED if any(accepted) else Decision.REJECTED, self.recorded,
                          mask_from_verdicts(accepted), sum(accepted), len(ballots))

    def advance_to(self, timestamp):
        pass

    def pool_tokens(self):
        return 0.0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As fl.simulation.runner: the models are tiny, and threads only contend on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lending():
    config = SimulationConfig(clients=12, seed=2)
    return make_federated_data(load_lending_club(), config.clients, config.seed)


def addresses(n):
    return [to_checksum_address(f"0x{i + 1:040x}") for i in range(n)]


def reversed_first_proposal(ledger, proposals):
    """Proposal 0 becomes the exact reverse of proposal 1's update (same norm, opposite direction)."""
    _, honest_hash, _ = proposals[1]
    global_state = ledger.global_state
    honest = ledger.store.load_update(honest_hash, global_state)
    poisoned = {k: 2 * global_state[k] - honest[k] for k in honest}
    address, _, count = proposals[0]
    proposals[0] = (address, ledger.store.put_state(poisoned), count)
    ledger.poisoned_hash = proposals[0][1]
    return proposals


class GlobalTracking(BallotLedger):
    """Hands the poison hook the model round 1 starts from (the task's initial model)."""

    def __init__(self, config, data, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.global_state = task_of(config).make_model(data, config.seed).state_dict()


def run_with(config, data, ledger, store):
    clients = make_clients(data, addresses(config.clients), config)
    seen = []
    records, run = run_protocol(config, data, clients, ledger, store, opener=None,
                                on_round=lambda record, extra: seen.append((record, extra)))
    return records, run, seen


def test_cosine_review__reversed_proposal_rejected__new_model_is_fedavg_of_the_rest(lending, tmp_path):
    config = SimulationConfig(clients=12, rounds=1, malicious_ratio=0.0, seed=2, review="cosine")
    store = UpdateStore(str(tmp_path / "u"))
    ledger = GlobalTracking(config, lending, addresses(12), 4, store, poison=reversed_first_proposal)

    records, run, seen = run_with(config, lending, ledger, store)

    (record, extra), = seen
    assert extra["accepted"] == [False, True, True, True]
    assert record.accepted_proposals == 3 and record.honest_rejected == 1  # the reversal is an honest client's
    # every honest voter rejected the reversed proposal and accepted the others
    masks = {b.accept_mask for b in ledger.ballots[1]}
    assert masks == {0b1110}
    start = ledger.global_state
    accepted = [store.load_update(p.update_hash, start) for p in ledger.proposals[1][1:]]
    counts = [p.sample_count for p in ledger.proposals[1][1:]]
    expected = fedavg(list(zip(accepted, counts)))
    assert all(torch.equal(run.global_state[k], expected[k]) for k in expected)  # bit-exact
    assert run.global_hash == hash_state(expected)
    assert record.parent_model_hash == "0x" + hash_state(start).hex()


def global_model_for_the_first_proposal(ledger, proposals):
    """A free rider: the first proposer resubmits the global model (update 0)."""
    (address, _, count), *rest = proposals
    return [(address, ledger.store.put_state(dict(ledger.global_state)), count), *rest]


@pytest.mark.parametrize(("rule", "accepted"), [("cosine", [True] * 4), ("cosine_floor", [False, True, True, True])])
def test_free_rider__passes_cosine__rejected_by_cosine_floor(lending, tmp_path, rule, accepted):
    config = SimulationConfig(clients=12, rounds=1, malicious_ratio=0.0, seed=2, review=rule)
    store = UpdateStore(str(tmp_path / "u"))
    ledger = GlobalTracking(config, lending, addresses(12), 4, store, poison=global_model_for_the_first_proposal)

    records, run, seen = run_with(config, lending, ledger, store)

    assert seen[0][1]["accepted"] == accepted  # a zero update has cosine 0 > -0.1; only the floor stops it


def test_cosine_review__nothing_accepted__model_unchanged(lending, tmp_path):
    config = SimulationConfig(clients=12, rounds=1, malicious_ratio=0.0, seed=2, review="cosine")
    store = UpdateStore(str(tmp_path / "u"))

    def all_reversed(ledger, proposals):
        out = []
        for address, h, count in proposals:
            honest = ledger.store.load_update(h, ledger.global_state)
            out.append((address, ledger.store.put_state({k: 2 * ledger.global_state[k] - honest[k] for k in honest}), count))
        return out

    ledger = GlobalTracking(config, lending, addresses(12), 4, store, poison=all_reversed)

    records, run, seen = run_with(config, lending, ledger, store)

    assert seen[0][1]["accepted"] == [False] * 4 and records[0].decision == "rejected"
    assert run.global_hash == bytes.fromhex(records[0].parent_model_hash[2:])


def test_malicious_voters__invert_their_verdicts(lending, tmp_path):
    config = SimulationConfig(clients=12, rounds=1, malicious_ratio=0.25, malicious_roles="voter", seed=2, review="cosine")
    store = UpdateStore(str(tmp_path / "u"))
    ledger = GlobalTracking(config, lending, addresses(12), 4, store, poison=reversed_first_proposal)
    clients = {c.address: c for c in make_clients(lending, addresses(12), config)}

    run_with(config, lending, ledger, store)

    for ballot in ledger.ballots[1]:
        expected = 0b0001 if clients[ballot.voter].behaviour.malicious_voter else 0b1110
        assert ballot.accept_mask == expected
    assert any(clients[b.voter].malicious for b in ledger.ballots[1])


@pytest.mark.parametrize("ratio", [0.0, 0.4])
def test_aggregate_review__uniform_ballots(lending, tmp_path, ratio):
    config = SimulationConfig(clients=12, rounds=2, malicious_ratio=ratio, seed=2, review="aggregate")
    store = UpdateStore(str(tmp_path / "u"))
    ledger = GlobalTracking(config, lending, addresses(12), 4, store)

    records, _, _ = run_with(config, lending, ledger, store)

    for r, record in enumerate(records, start=1):
        assert {b.accept_mask for b in ledger.ballots[r]} <= {0, 0b1111}
        assert record.accept_votes + record.reject_votes == record.voters
        assert record.accepted_proposals in (0, 4)


def test_review_summary__shares_and_removals():
    rows = [
        {"round": 1, "malicious_accepted": 1, "malicious_rejected": 3, "honest_accepted": 5, "honest_rejected": 1,
         "removed_honest": 0, "removed_malicious": 0},
        {"round": 2, "malicious_accepted": 0, "malicious_rejected": 4, "honest_accepted": 6, "honest_rejected": 0,
         "removed_honest": 1, "removed_malicious": 2},
    ]

    summary = review_summary(rows, [])

    assert summary["malicious_proposals_rejected_pct"] == pytest.approx(87.5)
    assert summary["honest_proposals_rejected_pct"] == pytest.approx(100 / 12)
    assert summary["removal_rounds"] == {"honest": [2], "malicious": [2, 2]}
    assert math.isnan(review_summary([], [])["honest_proposals_rejected_pct"])


def test_review_round__unusable_or_non_finite_proposals__rejected(lending):
    from fl.defences.voter_review import VoterView, review_round, rule_named

    config = SimulationConfig(clients=12, seed=2)
    template = task_of(config).make_model(lending, config.seed)
    start = template.state_dict()
    honest = {k: v + 0.001 for k, v in start.items()}
    nan = {k: torch.full_like(v, float("nan")) for k, v in start.items()}
    voters = [VoterView(c.val, c.train, seed=i) for i, c in enumerate(lending.clients[:3])]

    verdicts = review_round(rule_named("cosine"), template, start, [None, nan, honest], [100, 100, 100], voters,
                            train=task_of(config).train)

    assert all(v[0] is False and v[1] is False for v in verdicts)
