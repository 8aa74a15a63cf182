"""A small simulation on the embedded chain, checked against on-chain facts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fl.chain.connection import deployer_account, development_accounts
from fl.chain.ledger import ProtocolChain
from fl.protocol.params import to_units
from fl.learning.data import load_lending_club, make_federated_data
from fl.learning.model import init_model, state_of
from fl.simulation.recorder import read_metrics
from fl.simulation.runner import protocol_params, run_simulation
from fl.simulation.rounds import SimulationConfig, make_clients, run_protocol
from fl.learning.store import UpdateStore, hash_state, serialize
from fl.protocol.votes import Decision, Role

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).parent / "ape")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "sim"
    config = SimulationConfig(clients=10, rounds=4, malicious_ratio=0.3, proposer_fraction=0.3, seed=3)
    summary = run_simulation(config, folder, progress=False)
    return config, folder, summary


def test_simulation__global_hash_on_chain_equals_clients_model(small_run):
    _, folder, summary = small_run

    rows = read_metrics(folder)

    assert summary["rounds_completed"] == 4
    assert summary["global_model_hash_matches"] is True
    # the chain records the model the last round STARTED from (voters attest their parent), one
    # round behind the clients' model (protocol v2)
    assert summary["global_model_hash_onchain"] == rows[-1]["parent_model_hash"] == rows[-2]["global_model_hash"]
    assert summary["global_model_hash_clients"] == rows[-1]["global_model_hash"]
    assert all(r["recorded_model_hash"] == r["parent_model_hash"] for r in rows)


def test_simulation__tokens_conserved_and_events_match_chain(small_run):
    config, _, summary = small_run

    totals = summary["token_totals"]

    assert summary["tokens_conserved"] is True
    assert totals["stakes"] + totals["pool_balance"] + totals["wallets"] == to_units(config.stake) * config.clients
    assert summary["event_tokens_match_chain"] is True


def test_simulation__run_folder_complete(small_run):
    _, folder, summary = small_run

    expected = {"config.json", "metrics.csv", "events.jsonl", "summary.json", "accuracy.png", "tokens.png", "decisions.png"}

    assert expected <= {p.name for p in folder.iterdir()}
    assert len(read_metrics(folder)) == summary["rounds_completed"]
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "RoundSettled" for e in events) == 4


def test_chainless_ledger__draws_the_proposers_and_voters_the_contract_drew(small_run):
    """AcceptAllLedger replays VotingRound's draw (fl.protocol.draw): the chainless baselines face
    the proposers a protocol run of the same seed faced, round by round (none removed here)."""
    from fl.simulation.baselines import AcceptAllLedger, chainless_addresses, initial_model_hash
    from fl.simulation.rounds import load_federated_data

    config, folder, summary = small_run
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert not any(e["event"] == "ParticipantRemoved" for e in events)
    # this session's chain is shared by many tests, so its VotingRound is not at the fresh chain's address
    voting = summary["contracts"]["VotingRound"]
    ledger = AcceptAllLedger(chainless_addresses(config.clients), config.proposer_fraction, config.seed,
                             initial_model_hash(config, load_federated_data(config)), voting=voting)

    for r in range(1, summary["rounds_completed"] + 1):
        opening = ledger.open_round()
        drawn = [(e["args"]["client"], e["args"]["role"]) for e in events
                 if e["event"] == "ParticipantSelected" and e["args"]["roundId"] == r]
        assert [a for a, role in drawn if role == Role.PROPOSER] == opening.proposers
        assert [a for a, role in drawn if role == Role.VOTER] == opening.voters


def test_deploy__voting_round_is_the_deployers_fourth_creation():
    """fl.protocol.draw assumes VotingRound is created with the deployer's nonce + 3 (TestToken,
    StakeRegistry, ProposalPool first): on a fresh development chain, nonce 3."""
    from fl.protocol.draw import VOTING_DEPLOY_NONCE, create_address

    deployer = deployer_account()
    nonce = deployer.nonce

    protocol = ProtocolChain.deploy(deployer, protocol_params(SimulationConfig()), b"\x01" * 32)

    assert str(protocol.voting.address) == create_address(str(deployer.address), nonce + VOTING_DEPLOY_NONCE)


class TamperingLedger:
    """Passes every call to the chain, but overwrites the first proposal blob of chosen rounds."""

    def __init__(self, protocol, store, rounds_to_tamper, mode):
        self.protocol, self.store, self.rounds, self.mode = protocol, store, rounds_to_tamper, mode

    def __getattr__(self, name):
        return getattr(self.protocol, name)

    def propose(self, round_id, proposals):
        proposals = list(proposals)
        if round_id in self.rounds and proposals:
            path = self.store.blob_path(proposals[0][1])
            if self.mode == "bytes":
                self.store.fs.pipe(path, b"not the bytes that were hashed")
            elif self.mode == "missing":
                self.store.fs.rm(path)
        return self.protocol.propose(round_id, proposals)


@pytest.mark.parametrize("mode", ["bytes", "missing"])
def test_simulation__bad_blob__voters_reject_and_proposers_slashed(tmp_path, mode):
    config = SimulationConfig(clients=6, rounds=2, malicious_ratio=0.0, seed=5)
    data = make_federated_data(load_lending_club(), config.clients, config.seed)
    deployer = deployer_account()
    initial = hash_state(state_of(init_model(data.num_features, config.seed)))
    protocol = ProtocolChain.deploy(deployer, protocol_params(config), initial)
    accounts = development_accounts(config.clients, funder=deployer)
    protocol.enroll(accounts, config.stake, minter=deployer)
    store = UpdateStore(str(tmp_path / "updates"))
    clients = make_clients(data, [str(a.address) for a in accounts], config)
    ledger = TamperingLedger(protocol, store, rounds_to_tamper={1}, mode=mode)

    records, _ = run_protocol(config, data, clients, ledger, store, deployer)

    assert [r.decision for r in records] == ["rejected", "accepted"]
    round_one = protocol.voting.getRound(1)
    assert Decision(round_one.decision) == Decision.REJECTED
    events = protocol.drain_events()
    settled = [e["args"] for e in events if e["event"] == "ParticipantSettled"]
    proposers = [a for a in settled if a["roundId"] == 1 and a["role"] == int(Role.PROPOSER)]
    expected_stake = to_units(config.proposer_stake)
    swept = sum(e["args"]["amount"] for e in events if e["event"] == "UnassignedSwept")
    released = sum(e["args"]["amount"] for e in events if e["event"] == "RewardReleased")
    assert len(proposers) >= 1
    assert all(int(a["slashed"]) == expected_stake and not a["won"] for a in proposers)
    assert swept >= expected_stake * len(proposers)
    assert protocol.pool_balance() == swept - released


def test_simulation__nan_update__rejected(tmp_path):
    config = SimulationConfig(clients=6, rounds=1, malicious_ratio=0.0, seed=6)
    data = make_federated_data(load_lending_club(), config.clients, config.seed)
    deployer = deployer_account()
    initial = hash_state(state_of(init_model(data.num_features, config.seed)))
    protocol = ProtocolChain.deploy(deployer, protocol_params(config), initial)
    accounts = development_accounts(config.clients, funder=deployer)
    protocol.enroll(accounts, config.stake, minter=deployer)
    store = UpdateStore(str(tmp_path / "updates"))
    clients = make_clients(data, [str(a.address) for a in accounts], config)

    class NaNLedger(TamperingLedger):
        def propose(self, round_id, proposals):
            proposals = list(proposals)
            address, _, count = proposals[0]
            state = {k: torch.full_like(v, float("nan")) for k, v in state_of(init_model(data.num_features, 0)).items()}
            proposals[0] = (address, self.store.put(serialize(state)), count)
            return self.protocol.propose(round_id, proposals)

    records, _ = run_protocol(config, data, clients, NaNLedger(protocol, store, set(), ""), store, deployer)

    assert records[0].decision == "rejected"
    assert records[0].reject_votes == records[0].voters


def test_simulate_cli__same_seed_same_results(tmp_path):
    """Two separate `ape run simulate` processes with one seed write identical metrics on the
    embedded chain (anvil, the default: tests/e2e/test_reproducible_anvil.py)."""
    outputs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        result = subprocess.run(
            [APE, "run", "simulate", "--network", "ethereum:local:test", "--clients", "6", "--rounds", "2",
             "--malicious-ratio", "0.34", "--seed", "11", "--output", str(folder)],
            cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        rows = read_metrics(folder)
        outputs.append([{k: v for k, v in r.items() if k not in ("seconds",)} for r in rows])

    assert outputs[0] == outputs[1]


def test_run_simulation__twice_in_one_process__identical(tmp_path):
    """Each run restores the embedded chain afterwards, so a second run repeats the first."""
    config = SimulationConfig(clients=6, rounds=2, malicious_ratio=0.34, seed=4)

    runs = [run_simulation(config, tmp_path / name, progress=False) for name in ("a", "b")]

    expected, actual = (
        [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / name)] for name in ("a", "b")
    )
    assert actual == expected
    assert runs[0]["global_model_hash_onchain"] == runs[1]["global_model_hash_onchain"]


def test_simulate_cli__missing_data_file__one_line_error(tmp_path):
    result = subprocess.run(
        [APE, "run", "simulate", "--rounds", "1", "--data-file", str(tmp_path / "nope.csv"),
         "--output", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )

    assert result.returncode != 0
    assert "nope.csv" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_simulation__per_proposal_review__only_the_bad_blobs_proposer_slashed(tmp_path):
    config = SimulationConfig(clients=8, rounds=1, malicious_ratio=0.0, proposer_fraction=0.375, seed=5, review="cosine")
    data = make_federated_data(load_lending_club(), config.clients, config.seed)
    deployer = deployer_account()
    initial = hash_state(state_of(init_model(data.num_features, config.seed)))
    protocol = ProtocolChain.deploy(deployer, protocol_params(config), initial)
    accounts = development_accounts(config.clients, funder=deployer)
    protocol.enroll(accounts, config.stake, minter=deployer)
    store = UpdateStore(str(tmp_path / "updates"))
    clients = make_clients(data, [str(a.address) for a in accounts], config)
    ledger = TamperingLedger(protocol, store, rounds_to_tamper={1}, mode="bytes")

    records, run = run_protocol(config, data, clients, ledger, store, deployer)

    proposals = protocol.proposals_of(1)
    assert len(proposals) == 3
    assert records[0].decision == "accepted"
    assert (records[0].accepted_proposals, records[0].honest_rejected) == (2, 1)
    events = protocol.drain_events()
    settled = {e["args"]["client"]: e["args"] for e in events
               if e["event"] == "ParticipantSettled" and e["args"]["role"] == int(Role.PROPOSER)}
    assert int(settled[proposals[0].proposer]["slashed"]) == to_units(config.proposer_stake)
    assert all(int(settled[p.proposer]["slashed"]) == 0 and settled[p.proposer]["won"] for p in proposals[1:])
    accepted = [store.load_update(p.update_hash, run.global_state) for p in proposals[1:]]
    from fl.defences.aggregate import fedavg
    expected = fedavg([(s, p.sample_count) for s, p in zip(accepted, proposals[1:])])
    assert run.global_hash == hash_state(expected)  # the new model: FedAvg of the accepted two, bit-exact
    # the chain recorded the parent the voters attested: the initial model
    assert protocol.global_model_hash() == initial
