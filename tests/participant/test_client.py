"""The decentralised client's decisions (fl.participant.client) against an in-memory model of VotingRound.

No chain here: `FakeChain` keeps the contract's rules that the client relies on (phases from
deadlines, one proposal / commit / reveal per selected client, reveal must match the commit),
so restarts, reverts, outages and deadlines can be played exactly. The real contracts and
processes are exercised by tests/e2e/test_decentralised.py.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl.chain import deployments
from fl.learning.data import ClientData, DataError, Split
from fl.participant.client import Participant, phase, seed_block_wait, turn_delay
from fl.participant.data import load_participant_data, write_shard_csv
from fl.participant.state import ClientConfig, ClientState, ParticipantError
from fl.simulation.rounds import ZERO_HASH
from fl.defences.aggregate import fedavg
from fl.learning.store import UpdateStore, hash_state
from fl.learning.model import init_model, state_of
from fl.protocol.votes import Decision, Role, RoundState, commitment_for

NUM_FEATURES = 8
PERIOD = 10


def make_separable_split(num_rows: int, num_features: int = NUM_FEATURES, seed: int = 0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(num_rows, num_features, generator=generator)
    y = (X @ torch.linspace(-1.0, 1.0, num_features) > 0).to(torch.float32)
    return Split(X=X, y=y)


class Revert(Exception):
    pass


def classify(exc):
    if isinstance(exc, Revert):
        return "revert"
    if isinstance(exc, ConnectionError):
        return "transient"
    return None


class FakeChain:
    """Just enough of VotingRound + StakeRegistry (protocol v2: ballots over proposals, the parent
    hash a voter majority confirms) for one client's decisions."""

    def __init__(self, initial_hash: bytes, clients: list[str]):
        self.now = 1_000
        self.global_hash = initial_hash
        self.current = 0
        self.rounds: dict[int, dict] = {}
        self.stakes = {c: {"stake": 64, "locked": 0, "active": True, "removed": False} for c in clients}
        self.sent: list[tuple[str, str, int]] = []
        self.outcomes: dict[tuple[int, str], tuple[bool, int, int]] = {}
        self.head = 100  # the latest block
        self.seed_block = 0  # the next round's seed block (0: a deployment without one)
        self.seed_block_delay = 3

    def open(self, proposers: list[str], voters: list[str]) -> int:
        self.current += 1
        t = self.now
        self.rounds[self.current] = {
            "view": SimpleNamespace(round_id=self.current, proposal_deadline=t + PERIOD, commit_deadline=t + 2 * PERIOD,
                                    reveal_deadline=t + 3 * PERIOD, settled=False, decision=Decision.NONE,
                                    global_model_hash=self.global_hash, reveal_count=0, accepted_mask=0,
                                    accepted_count=0, leading_parent_hash=ZERO_HASH, leading_parent_votes=0,
                                    parent_confirmed=False),
            "roles": {**{p: Role.PROPOSER for p in proposers}, **{v: Role.VOTER for v in voters}},
            "acted": set(), "revealed": {}, "commitments": {}, "proposals": [],
        }
        return self.current

    def state(self, r: int) -> RoundState:
        return phase(self.rounds[r]["view"], self.now)

    def accepts(self, r: int) -> list[int]:
        info = self.rounds[r]
        return [sum(mask >> i & 1 for mask, _ in info["revealed"].values()) for i in range(len(info["proposals"]))]

    def settle(self, r: int) -> None:
        info, view = self.rounds[r], self.rounds[r]["view"]
        revealed = len(info["revealed"])
        view.accepted_mask = sum(1 << i for i, n in enumerate(self.accepts(r)) if 2 * n > revealed)
        view.accepted_count = bin(view.accepted_mask).count("1")
        parents = [h for _, h in info["revealed"].values()]
        if parents:
            view.leading_parent_hash = max(parents, key=parents.count)
            view.leading_parent_votes = parents.count(view.leading_parent_hash)
        view.reveal_count = revealed
        view.parent_confirmed = 2 * view.leading_parent_votes > revealed
        if view.parent_confirmed:
            self.global_hash = view.leading_parent_hash
        view.settled = True
        view.decision = Decision.ACCEPTED if view.accepted_mask else Decision.REJECTED
        view.global_model_hash = self.global_hash


class FakeLedger:
    def __init__(self, chain: FakeChain, address: str):
        self.chain, self.address = chain, address
        self.down = 0  # calls left that fail as if the node were unreachable

    def _reachable(self):
        if self.down:
            self.down -= 1
            raise ConnectionError("connection refused")

    def current_round_id(self):
        self._reachable()
        return self.chain.current

    def round(self, r):
        return self.chain.rounds[r]["view"]

    def participant(self, r, address=None):
        info = self.chain.rounds[r]
        a = address or self.address
        return SimpleNamespace(role=info["roles"].get(a, Role.NONE), acted=a in info["acted"],
                               revealed=a in info["revealed"])

    def proposals(self, r):
        return list(self.chain.rounds[r]["proposals"])

    def proposal_accepts(self, r):
        return self.chain.accepts(r)

    def global_model_hash(self):
        return self.chain.global_hash

    def stake(self, address=None):
        return dict(self.chain.stakes[address or self.address])

    def active_clients(self):
        return [a for a, s in self.chain.stakes.items() if s["active"]]

    def token_balance(self, address=None):
        return 0

    def settlement_of(self, r, from_block=0, address=None):
        return self.chain.outcomes.get((r, address or self.address))

    def _act(self, action, r, required: RoundState):
        info = self.chain.rounds[r]
        if self.chain.state(r) != required:
            raise Revert(f"RoundNotInState({r})")
        self.chain.sent.append((self.address, action, r))
        return info

    def propose(self, r, update_hash, samples):
        info = self._act("propose", r, RoundState.PROPOSING)
        if self.address in info["acted"]:
            raise Revert("RoundAlreadyActed")
        info["acted"].add(self.address)
        info["proposals"].append(SimpleNamespace(proposer=self.address, update_hash=update_hash, sample_count=samples))
        return "0xpropose"

    def commit(self, r, commitment):
        info = self._act("commit", r, RoundState.COMMITTING)
        if self.address in info["acted"]:
            raise Revert("RoundAlreadyActed")
        info["acted"].add(self.address)
        info["commitments"][self.address] = commitment
        return "0xcommit"

    def reveal(self, r, accept_mask, parent_hash, salt):
        info = self._act("reveal", r, RoundState.REVEALING)
        if accept_mask >> len(info["proposals"]):
            raise Revert("RoundInvalidBallot")
        if commitment_for(r, self.address, accept_mask, parent_hash, salt) != info["commitments"].get(self.address):
            raise Revert("RoundCommitmentMismatch")
        info["revealed"][self.address] = (accept_mask, parent_hash)
        return "0xreveal"

    def withdraw(self, amount):
        self.chain.sent.append((self.address, "withdraw", 0))
        self.chain.stakes[self.address]["stake"] -= amount
        return "0xwithdraw"

    def next_seed_block(self):
        return self.chain.seed_block

    def head_block(self):
        return self.chain.head

    def mine_blocks_if_automining(self, blocks):
        return False  # a chain that makes blocks on its own clock

    def open_round(self):
        raise Revert("opening is played by the test")

    def reanchor_seed_block(self):
        if self.chain.head + 1 <= self.chain.seed_block + 256:
            raise Revert("RoundSeedBlockNotExpired")
        self.chain.sent.append((self.address, "reanchor", self.chain.current + 1))
        self.chain.seed_block = self.chain.head + 1 + self.chain.seed_block_delay
        return "0xreanchor"

    def settle(self, r):
        if self.chain.state(r) != RoundState.SETTLEABLE:
            raise Revert("RoundNotInState")
        self.chain.sent.append((self.address, "settle", r))
        self.chain.settle(r)
        return "0xsettle"


A, B, C, D = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20, "0x" + "dd" * 20


@pytest.fixture
def world(tmp_path):
    initial = state_of(init_model(NUM_FEATURES, 0))
    chain = FakeChain(hash_state(initial), [A, B, C, D])
    store_url = str(tmp_path / "store")  # a real folder: hostile blobs can be directories and symlinks

    def make(address: str, index: int, **config) -> Participant:
        data = ClientData(train=make_separable_split(64, NUM_FEATURES, seed=index),
                          val=make_separable_split(64, NUM_FEATURES, seed=10 + index))
        state = ClientState(tmp_path / address[:6], address, "0xvoting", 31337)
        return Participant(FakeLedger(chain, address), classify, UpdateStore(store_url), state, data,
                           NUM_FEATURES, 0, ClientConfig(**{"poll_seconds": 0.01, "review": "aggregate", **config}),
                           clock=lambda: chain.now)

    return SimpleNamespace(chain=chain, make=make, store_url=store_url, initial=initial, tmp_path=tmp_path)


def plant(world, round_id: int, proposer: str, update_hash: bytes, samples: int = 10) -> None:
    """A proposal on chain as a hostile proposer would make it (whatever is or is not in the store)."""
    info = world.chain.rounds[round_id]
    info["proposals"].append(SimpleNamespace(proposer=proposer, update_hash=update_hash, sample_count=samples))
    info["acted"].add(proposer)


def play_round(world, clients, proposers, voters, settle: bool = True) -> int:
    """Open a round and step every client through proposing, committing and revealing (and settle)."""
    r = world.chain.open(proposers, voters)
    for _ in range(3):
        for p in clients:
            p.step()
        world.chain.now += PERIOD
    if settle:
        world.chain.settle(r)
    return r


def test_phase__matches_the_contract_boundaries():
    view = SimpleNamespace(settled=False, proposal_deadline=10, commit_deadline=20, reveal_deadline=30)

    actual = [phase(view, t) for t in (9, 10, 19, 20, 29, 30)]

    assert actual == [RoundState.PROPOSING, RoundState.COMMITTING, RoundState.COMMITTING,
                      RoundState.REVEALING, RoundState.REVEALING, RoundState.SETTLEABLE]


def test_turn_delay__rotates_with_the_round():
    active = [A, B, C]

    assert [turn_delay(c, active, 0, 2.0) for c in active] == [0.0, 2.0, 4.0]
    assert [turn_delay(c, active, 1, 2.0) for c in active] == [4.0, 0.0, 2.0]
    assert turn_delay("0x" + "dd" * 20, active, 1, 2.0) is None


@pytest.mark.parametrize("seed_block, head, expected", [
    (0, 5, "open"), (10, 8, "wait"), (10, 9, "wait"), (10, 10, "open"), (10, 265, "open"), (10, 266, "reanchor")])
def test_seed_block_wait__as_open_round_decides(seed_block, head, expected):
    """openRound runs in block head + 1: it needs head + 1 > seedBlock and head + 1 <= seedBlock + 256."""
    assert seed_block_wait(seed_block, head) == expected


class RoundSeedBlockNotReached(Revert):
    """Named like VotingRound's custom error, as Ape names the exception it raises for it."""


def test_open__seed_block__waits_quietly_then_opens_and_reanchors_once_expired(world, caplog):
    opener = world.make(A, 0, turn_seconds=0)
    opened = []
    opener.ledger.open_round = lambda: opened.append(world.chain.head) or "0xopen"
    world.chain.seed_block, world.chain.head = 105, 100

    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        opener.step()
        world.chain.head = 103
        opener.step()
    assert opened == []
    assert [r.getMessage() for r in caplog.records] == ["round 1: waiting for seed block 105 before opening"]

    world.chain.head = 105  # the seed block is mined: the next block may open
    opener.step()
    assert opened == [105]

    world.chain.head = 105 + 256  # nobody opened: the hash is gone
    opener.step()
    assert world.chain.sent == [(A, "reanchor", 1)] and world.chain.seed_block == 105 + 256 + 1 + 3
    assert opened == [105]
    opener.step()  # waits for the new seed block
    assert opened == [105] and world.chain.sent == [(A, "reanchor", 1)]


def test_open__seed_block_not_reached_revert__is_a_wait_not_an_error(world, caplog):
    """A node may answer the head a block early: openRound's RoundSeedBlockNotReached is retried quietly."""
    opener = world.make(A, 0, turn_seconds=0)

    def too_early():
        raise RoundSeedBlockNotReached("seedBlock=101, blockNumber=101")

    opener.ledger.open_round = too_early
    world.chain.seed_block, world.chain.head = 100, 100
    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        opener.step()
        opener.step()

    journal = [json.loads(line) for line in opener.state.journal.read_text().splitlines()]
    assert [(e["action"], e["status"]) for e in journal] == [("open", "sending"), ("open", "waiting")] * 2
    assert [r.getMessage() for r in caplog.records] == ["round 1: waiting for seed block 100 before opening"]


def test_round__proposer_and_voters_act_once_each(world):
    a, b, c = world.make(A, 0), world.make(B, 1), world.make(C, 2)
    r = world.chain.open([A], [B, C])

    for _ in range(2):  # a second poll in the same phase sends nothing
        for p in (a, b, c):
            p.step()
    world.chain.now += PERIOD
    for _ in range(2):
        for p in (a, b, c):
            p.step()
    world.chain.now += PERIOD
    for _ in range(2):
        for p in (a, b, c):
            p.step()

    expected = [(A, "propose", r), (B, "commit", r), (C, "commit", r), (B, "reveal", r), (C, "reveal", r)]
    assert world.chain.sent == expected
    assert set(world.chain.rounds[r]["revealed"]) == {B, C}


def test_voter_restarted_after_commit__reveals_the_saved_ballot_without_recommitting(world):
    a, b = world.make(A, 0), world.make(B, 1)
    r = world.chain.open([A], [B])
    a.step()
    world.chain.now += PERIOD
    b.step()
    committed = b.state.ballot(r)
    b.state.close()  # the process dies

    restarted = world.make(B, 1)
    restarted.step()  # still committing: already acted on chain, nothing to send
    world.chain.now += PERIOD
    restarted.step()

    assert [s for s in world.chain.sent if s[0] == B] == [(B, "commit", r), (B, "reveal", r)]
    assert world.chain.rounds[r]["revealed"][B] == (committed["accept_mask"], bytes.fromhex(committed["parent_hash"]))
    journal = [json.loads(line) for line in restarted.state.journal.read_text().splitlines()]
    assert [(e["action"], e["status"]) for e in journal] == [
        ("commit", "sending"), ("commit", "sent"), ("reveal", "sending"), ("reveal", "sent")]


def test_voter_died_after_saving_ballot__commits_that_same_ballot(world):
    a, b = world.make(A, 0), world.make(B, 1)
    r = world.chain.open([A], [B])
    a.step()
    world.chain.now += PERIOD
    b.state.save_ballot(r, 0, b"\x01" * 32, b"\x02" * 32)  # decided, then died before sending

    b.step()

    assert world.chain.rounds[r]["commitments"][B] == commitment_for(r, B, 0, b"\x01" * 32, b"\x02" * 32)


def test_malicious_voter__votes_against_its_own_evidence(world):
    a, honest, malicious = world.make(A, 0), world.make(B, 1), world.make(C, 1, malicious=True)  # same data
    r = world.chain.open([A], [B, C])
    a.step()
    world.chain.now += PERIOD

    honest.step()
    malicious.step()

    assert honest.state.ballot(r)["accept_mask"] ^ malicious.state.ballot(r)["accept_mask"] == 0b1  # every verdict flipped
    assert honest.state.ballot(r)["parent_hash"] == malicious.state.ballot(r)["parent_hash"] == world.chain.global_hash.hex()


def test_settled_round__clients_adopt_fedavg_of_accepted_and_the_next_round_confirms_it(world):
    a, b, c = (world.make(x, i, until_round=2, epsilon=1.0) for i, x in enumerate((A, B, C)))  # accept any valid
    r = world.chain.open([A], [B, C])
    for _ in range(3):
        for p in (a, b, c):
            p.step()
        world.chain.now += PERIOD
    for p in (a, b, c):
        p.config.turn_seconds = 0
        p.step()  # settle (first one) then adopt
    for p in (a, b, c):
        p.step()
    proposal = world.chain.rounds[r]["proposals"][0]
    expected = hash_state(fedavg([(UpdateStore(world.store_url).load_update(proposal.update_hash, world.initial),
                                   proposal.sample_count)]))
    recorded_after_1 = world.chain.global_hash
    r2 = play_round(world, (a, b, c), [B], [A, C])
    for p in (a, b, c):
        p.step()

    assert world.chain.rounds[r]["view"].accepted_mask == 0b1
    assert {p.state.data["global_hash"] for p in (a, b, c) if p.state.data["adopted_round"] == 1} <= {expected.hex()}
    assert recorded_after_1 == hash_state(world.initial)  # round 1's voters confirmed the initial model
    assert world.chain.rounds[r2]["view"].global_model_hash == expected  # round 2's voters confirmed round 1's FedAvg
    assert [s[1] for s in world.chain.sent].count("settle") == 1


def test_nothing_accepted__model_unchanged(world, caplog):
    a, b, c = world.make(A, 0), world.make(B, 1, malicious=True, attack="voter", epsilon=1.0), \
        world.make(C, 2, malicious=True, attack="voter", epsilon=1.0)

    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        play_round(world, (a, b, c), [A], [B, C])
        a.step()

    assert world.chain.rounds[1]["view"].accepted_mask == 0
    assert a.state.data["adopted_round"] == 1
    assert a.state.data["global_hash"] == hash_state(world.initial).hex()
    assert "round 1: proposal 0 from 0xaaaaaaaa rejected (0 of 2 voters accept)" in caplog.text
    assert "round 1 settled: 0 of 1 proposals accepted" in caplog.text


def test_too_late__commit_not_sent(world):
    a, b = world.make(A, 0), world.make(B, 1)
    r = world.chain.open([A], [B])
    a.step()
    world.chain.now += PERIOD
    b.ledger.round = lambda rid: SimpleNamespace(**{**vars(world.chain.rounds[rid]["view"]),
                                                    "commit_deadline": world.chain.now})

    b.commit(r)

    assert (B, "commit", r) not in world.chain.sent


def test_revert__logged_and_left_for_the_next_poll(world, caplog):
    a = world.make(A, 0)
    r = world.chain.open([A], [B])
    world.chain.now += PERIOD  # proposing is over: the contract would refuse

    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        sent = a._send("propose", r, a.ledger.propose, r, b"\x03" * 32, 5)

    assert sent is False
    assert "propose not done" in caplog.text
    assert [json.loads(line)["status"] for line in a.state.journal.read_text().splitlines()] == ["sending", "reverted"]


def test_node_unreachable__run_retries_then_goes_on(world, caplog, monkeypatch):
    monkeypatch.setattr("fl.participant.client._sleep", lambda seconds, should_stop: None)
    a = world.make(A, 0, until_round=1)
    world.chain.open([A], [B])
    world.chain.settle(1)
    a.ledger.down = 3

    with caplog.at_level(logging.WARNING, logger="stakefl.client"):
        a.run()

    assert caplog.text.count("node unreachable") == 3
    assert a.done


def test_leave__withdraws_free_stake(world):
    a = world.make(A, 0)

    withdrawn = a.leave()

    assert withdrawn == 64
    assert world.chain.stakes[A]["stake"] == 0


def test_state_folder__one_process_and_one_identity(tmp_path):
    first = ClientState(tmp_path / "s", A, "0xvoting", 1)

    with pytest.raises(ParticipantError, match="another client is running"):
        ClientState(tmp_path / "s", A, "0xvoting", 1)
    first.close()
    with pytest.raises(ParticipantError, match="belongs to"):
        ClientState(tmp_path / "s", B, "0xvoting", 1)


def test_load_participant_data__csv_round_trip(tmp_path):
    client = ClientData(train=make_separable_split(40, NUM_FEATURES, seed=1), val=make_separable_split(10, NUM_FEATURES, 2))
    path = tmp_path / "mine.csv"
    write_shard_csv(client, None, path)

    data, width = load_participant_data(str(path), seed=0)

    assert width == NUM_FEATURES
    assert len(data.train) + len(data.val) == 50


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "no 'target' column"),
    ("a,target\nx,1\ny,0\nz,1\nw,0\n", "not numeric"),
    ("a,target\n1,2\n3,0\n4,1\n5,0\n", "only 0 and 1"),
])
def test_load_participant_data__bad_csv__clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)

    with pytest.raises(DataError, match=message):
        load_participant_data(str(path), seed=0)


@pytest.mark.parametrize("spec", ["lending:3", "lending:8/8", "lending:a/b", "no-such-file.csv"])
def test_load_participant_data__bad_spec__clear_error(spec):
    with pytest.raises(DataError):
        load_participant_data(spec, seed=0)


def test_deployments__round_trip_and_missing_network(tmp_path):
    path = tmp_path / "deployments.json"
    record = deployments.Deployment(chain_id=5, network="ethereum:local:foundry", token="0x1", registry="0x2",
                                    pool="0x3", voting="0x4", test_token=True,
                                    model={"initial_hash": "0x" + "ab" * 32, "num_features": 3, "seed": 0})

    deployments.save(path, "ethereum:local:foundry", record)
    loaded = deployments.load(path, "ethereum:local:node")  # same chain, another provider

    assert loaded == record
    assert loaded.initial_model_hash == bytes.fromhex("ab" * 32)
    with pytest.raises(deployments.DeploymentError, match="ape run deploy --network ethereum:sepolia:node"):
        deployments.load(path, "ethereum:sepolia:node")


def client_script():
    """scripts/client.py as a module, loaded by path: `scripts` is not a package on sys.path."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "client.py"
    spec = importlib.util.spec_from_file_location("stakefl_client_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- ballots
def test_review_rules__the_names_and_default_of_ape_run_simulate():
    from fl.defences.voter_review import DEFAULT_RULE, RULES

    cli = client_script().cli

    option = next(p for p in cli.params if p.name == "review")

    assert list(option.type.choices) == list(RULES)
    assert option.default == ClientConfig().review == DEFAULT_RULE


@pytest.mark.parametrize("review", ["aggregate", "loss_vs_global", "loss_vs_median", "leave_one_out", "cosine",
                                    "cosine_and_loss"])
def test_review_rules__honest_and_poisoned_proposals__one_verdict_each(world, review):
    honest, poisoner = world.make(A, 0), world.make(D, 0, malicious=True, attack="proposer")
    voter = world.make(B, 1, review=review, epsilon=1.0)
    r = world.chain.open([A, D], [B])
    honest.step()
    poisoner.step()
    world.chain.now += PERIOD

    voter.step()

    mask = voter.state.ballot(r)["accept_mask"]
    assert 0 <= mask < 4 and (world.chain.sent[-1] == (B, "commit", r))
    if review == "aggregate":  # the paper's rule: a uniform ballot
        assert mask in (0b00, 0b11)


# ---------------------------------------------------------------------- issue 15: hostile store contents
def _hostile(world, kind: str) -> bytes:
    """Make the store hostile in one way; returns the hash a proposer puts on chain for it."""
    import os

    from safetensors.torch import save as safetensors_save

    from fl.learning.store import content_hash, serialize

    store = UpdateStore(world.store_url)
    initial = world.initial
    if kind == "missing":
        return b"\x05" * 32
    if kind == "directory":
        h = b"\x07" * 32
        os.makedirs(store.blob_path(h))
        return h
    if kind == "symlink":  # to a file outside the store: hashes to something else
        h = b"\x08" * 32
        os.symlink("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd", store.blob_path(h))
        return h
    if kind == "dangling_symlink":
        h = b"\x09" * 32
        os.symlink(str(world.tmp_path / "nowhere"), store.blob_path(h))
        return h
    data = {
        "garbage": b"\x00garbage\xff" * 100,
        "truncated": serialize(initial)[:-17],
        "pickle": b"\x80\x04\x95" + b"cos\nsystem\n(S'touch /tmp/pwned'\ntR." + b"\x00" * 8,
        "huge": serialize({**initial, "~padding": torch.zeros(2**21)}),  # 8 MB, well formed, extra key
        "float64": safetensors_save({k: v.to(torch.float64).contiguous() for k, v in initial.items()}),
        "wrong_shape": serialize({k: torch.zeros(tuple(s + 1 for s in v.shape)) for k, v in initial.items()}),
        "nan": serialize({k: torch.full_like(v, float("nan")) for k, v in initial.items()}),
        "inf": serialize({k: torch.full_like(v, float("inf")) for k, v in initial.items()}),
        "missing_key": serialize(dict(list(initial.items())[1:])),
        "empty": b"",
    }[kind]
    h = content_hash(data)
    path = store.blob_path(h)
    with open(path, "wb") as file:
        file.write(data)
    return h


HOSTILE_KINDS = ["missing", "directory", "symlink", "dangling_symlink", "garbage", "truncated", "pickle", "huge",
                 "float64", "wrong_shape", "nan", "inf", "missing_key", "empty"]


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_blob__voter_rejects_it_and_keeps_reviewing_the_others(world, kind, caplog):
    honest, voter = world.make(A, 0), world.make(B, 1, review="loss_vs_global")
    r = world.chain.open([A, D], [B])
    honest.step()
    plant(world, r, D, _hostile(world, kind))
    world.chain.now += PERIOD

    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        voter.step()  # no exception: that is the point
        world.chain.now += PERIOD
        voter.step()

    assert voter.state.ballot(r)["accept_mask"] == 0b01  # honest proposal 0 accepted, hostile 1 rejected
    assert world.chain.rounds[r]["revealed"][B][0] == 0b01
    assert "proposal 1 from 0xdddddddd unusable" in caplog.text


def test_hostile_blob__paper_rule__the_aggregate_is_unusable_so_every_proposal_rejected(world):
    honest, voter = world.make(A, 0), world.make(B, 1, epsilon=1.0)  # epsilon 1: any usable aggregate passes
    r = world.chain.open([A, D], [B])
    honest.step()
    plant(world, r, D, _hostile(world, "directory"))
    world.chain.now += PERIOD

    voter.step()

    assert voter.state.ballot(r)["accept_mask"] == 0b00


def test_hostile_blob__altered_bytes_under_a_hash__rejected(world):
    honest, voter = world.make(A, 0), world.make(B, 1, review="loss_vs_global")
    r = world.chain.open([A, D], [B])
    honest.step()
    store = UpdateStore(world.store_url)
    h = store.put_state({k: v + 1 for k, v in world.initial.items()})
    with open(store.blob_path(h), "r+b") as file:  # flip one byte after the header
        file.seek(-4, 2)
        file.write(b"\x00\x00\x80\x7f")
    plant(world, r, D, h)
    world.chain.now += PERIOD

    voter.step()

    assert voter.state.ballot(r)["accept_mask"] == 0b01


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(min_size=0, max_size=2048))
def test_hostile_blob__any_bytes__rejected_never_a_crash(world, blob):
    from fl.learning.store import content_hash

    voter = world.make(B, 1, epsilon=1.0) if not hasattr(world, "voter") else world.voter
    world.voter = voter
    store = UpdateStore(world.store_url)
    h = content_hash(blob)
    with open(store.blob_path(h), "wb") as file:
        file.write(blob)
    proposals = [SimpleNamespace(proposer=D, update_hash=h, sample_count=3)]

    verdicts, parent = voter.decide(1, proposals)

    assert verdicts == [False]
    assert parent == hash_state(world.initial)


def test_accepted_proposal_unavailable__adoption_waits_without_crashing(world, caplog):
    a, b = world.make(A, 0), world.make(B, 1, epsilon=1.0)
    r = play_round(world, (a, b), [A], [B])
    proposal = world.chain.rounds[r]["proposals"][0]
    import os
    os.unlink(UpdateStore(world.store_url).blob_path(proposal.update_hash))

    with caplog.at_level(logging.WARNING, logger="stakefl.client"):
        b.step()
        b.step()

    assert world.chain.rounds[r]["view"].accepted_mask == 0b1
    assert b.state.data["adopted_round"] == 0  # tried again at the next poll
    assert caplog.text.count("cannot derive the new model yet") == 1


# ---------------------------------------------------------------------- issue 15: missed settlement
def test_missed_settlement__outcome_and_own_slash_still_logged(world, caplog):
    a, b, c = world.make(A, 0), world.make(B, 1), world.make(C, 2)
    r = world.chain.open([A], [B, C])
    a.step()  # B and C are busy: they never act in round 1
    world.chain.now += 3 * PERIOD
    world.chain.settle(r)
    world.chain.outcomes[(r, B)] = (False, 4 * 10**18, 0)
    world.chain.open([A], [C])  # round 2 opened before B polled again

    with caplog.at_level(logging.INFO, logger="stakefl.client"):
        b.step()

    assert "round 1 settled: 0 of 1 proposals accepted" in caplog.text
    assert "me: lost, slashed 4, rewarded 0" in caplog.text
    assert b.state.data["adopted_round"] == 1


def test_parent_confirmed_differs_from_the_model_held__client_follows_the_chain(world, caplog):
    a, b, c = world.make(A, 0), world.make(B, 1, epsilon=1.0), world.make(C, 2, epsilon=1.0)
    play_round(world, (a, b, c), [A], [B, C])
    for p in (a, b, c):
        p.step()
    b.state.set_adopted(1, hash_state(world.initial))  # B's record went wrong somehow
    r2 = play_round(world, (a, c), [A], [C])  # only C votes: confirms the true model of round 1

    with caplog.at_level(logging.WARNING, logger="stakefl.client"):
        b.step()
        c.step()

    assert world.chain.rounds[r2]["view"].parent_confirmed
    assert "following the chain" in caplog.text
    assert b.state.data["global_hash"] == c.state.data["global_hash"]


# ---------------------------------------------------------------------- issue 15: the state file
def test_state_json__0600_in_a_0700_folder(tmp_path):
    import os
    import stat

    state = ClientState(tmp_path / "s", A, "0xvoting", 1)
    state.save_ballot(1, 0b1, b"\x01" * 32, b"\x02" * 32)
    state.record("commit", 1, "0x1")

    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state.journal).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700


def test_state_json__written_by_an_old_version_0644__tightened_on_open(tmp_path):
    import os
    import stat

    ClientState(tmp_path / "s", A, "0xvoting", 1).close()
    os.chmod(tmp_path / "s" / "state.json", 0o644)

    ClientState(tmp_path / "s", A, "0xvoting", 1)

    assert stat.S_IMODE(os.stat(tmp_path / "s" / "state.json").st_mode) == 0o600


def test_state_json__write_interrupted__old_file_intact(tmp_path, monkeypatch):
    state = ClientState(tmp_path / "s", A, "0xvoting", 1)
    state.save_ballot(1, 0b1, b"\x01" * 32, b"\x02" * 32)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # a signal in the middle of the write

    monkeypatch.setattr("fl.participant.state.json.dump", dies)
    with pytest.raises(KeyboardInterrupt):
        state.save_ballot(2, 0b0, b"\x03" * 32, b"\x04" * 32)
    monkeypatch.undo()
    state.close()

    reopened = ClientState(tmp_path / "s", A, "0xvoting", 1)
    assert set(reopened.data["ballots"]) == {"1"}
    assert not (tmp_path / "s" / "state.tmp").exists()


def test_state_json__unreadable__one_line_error(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "state.json").write_text("{not json")

    with pytest.raises(ParticipantError, match="restore it or give another --state folder"):
        ClientState(tmp_path / "s", A, "0xvoting", 1)


# ---------------------------------------------------------------------- issue 15: signals
def test_stop_on_signals__sigterm_then_sigint__stop_after_the_step_then_at_once():
    """In-process check of `ape run client`'s handlers (the e2e test sends SIGINT to a real client)."""
    import os
    import signal
    import sys
    import time

    _stop_on_signals = client_script()._stop_on_signals

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # what Ape installs
        stopping: list[str] = []
        _stop_on_signals(stopping)

        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stopping == ["SIGTERM"]  # asked to stop; the step goes on
        with pytest.raises(KeyboardInterrupt):  # a second signal (Ctrl-C) stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_run__stop_requested__returns_after_the_current_step(world):
    a = world.make(A, 0)
    world.chain.open([A], [B])
    stop = []
    steps = []
    original = a.step

    def step():
        steps.append(1)
        original()
        stop.append(True)  # the signal arrives during the step

    a.step = step
    a.run(should_stop=lambda: bool(stop))

    assert len(steps) == 1
    assert world.chain.sent == [(A, "propose", 1)]  # the step was finished, not cut short
