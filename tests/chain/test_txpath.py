"""The fast path's pieces give exactly what the slow ones give: signing (eth_account), log and
revert decoding (eth_abi), a voter's accuracy (fl.learning.model.evaluate) and the shared per-round
computations (AggregateCache, ScoreCache) against computing each separately."""

import random

import pytest
import torch
from eth_abi import encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from fl.chain import txpath
from fl.defences.aggregate import fedavg
from fl.learning.data import ClientData, Split
from fl.learning.model import evaluate, init_model, load_state, score, state_of, train_local
from fl.simulation.rounds import AggregateCache, ScoreCache, SimClient, build_aggregate, exact_accuracy
from fl.learning.store import UpdateStore, hash_state

EVENT_ABI = [
    {"type": "event", "name": "ParticipantSettled", "anonymous": False, "inputs": [
        {"name": "roundId", "type": "uint256", "indexed": True},
        {"name": "client", "type": "address", "indexed": True},
        {"name": "role", "type": "uint8", "indexed": False},
        {"name": "won", "type": "bool", "indexed": False},
        {"name": "slashed", "type": "uint256", "indexed": False},
        {"name": "rewarded", "type": "uint256", "indexed": False},
    ]},
    {"type": "event", "name": "Note", "anonymous": False, "inputs": [
        {"name": "who", "type": "address[]", "indexed": False},
        {"name": "text", "type": "string", "indexed": False},
        {"name": "h", "type": "bytes32", "indexed": False},
    ]},
    {"type": "error", "name": "RoundNotInState", "inputs": [
        {"name": "roundId", "type": "uint256"}, {"name": "current", "type": "uint8"}, {"name": "required", "type": "uint8"},
    ]},
]
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize("data", [b"", b"\x01" * 100, bytes(range(256)) * 3])
def test_sign_dynamic_fee_tx__equals_eth_account(data):
    key = keccak(b"a client's key")
    tx = {"type": 2, "chainId": 31337, "nonce": 7, "to": CONTRACT, "value": 5, "data": data, "gas": 210_000,
          "maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9}

    expected = bytes(Account.sign_transaction(tx, key).raw_transaction)
    actual = txpath.sign_dynamic_fee_tx(key, 31337, 7, 10**9, 3 * 10**9, 210_000, CONTRACT, 5, data)

    assert actual == expected
    assert Account.recover_transaction(actual) == Account.from_key(key).address


def test_event_decoder__static_and_dynamic_args_equal_eth_abi():
    decoder = txpath.EventDecoder([(CONTRACT, EVENT_ABI)])
    client = "0x" + "ab" * 20
    settled = {
        "address": CONTRACT.lower(),
        "topics": [keccak(b"ParticipantSettled(uint256,address,uint8,bool,uint256,uint256)"),
                   (3).to_bytes(32, "big"), bytes(12) + bytes.fromhex("ab" * 20)],
        "data": encode(["uint8", "bool", "uint256", "uint256"], [2, True, 4 * 10**18, 0]),
    }
    note = {
        "address": CONTRACT,
        "topics": [keccak(b"Note(address[],string,bytes32)")],
        "data": encode(["address[]", "string", "bytes32"], [[client], "hi", b"\x07" * 32]),
    }

    name, args = decoder.decode(settled)
    note_name, note_args = decoder.decode(note)

    assert name == "ParticipantSettled"
    assert args == {"roundId": 3, "client": to_checksum_address(client), "role": 2, "won": True,
                    "slashed": 4 * 10**18, "rewarded": 0}
    assert note_name == "Note" and note_args["text"] == "hi" and note_args["h"] == b"\x07" * 32
    assert note_args["who"] == [to_checksum_address(client)]
    assert decoder.decode({**settled, "address": "0x" + "00" * 20}) is None  # other contracts' logs are not ours


def test_error_decoder__names_custom_errors_and_reasons():
    errors = txpath.ErrorDecoder([EVENT_ABI])
    custom = keccak(b"RoundNotInState(uint256,uint8,uint8)")[:4] + encode(["uint256", "uint8", "uint8"], [1, 1, 4])
    reason = bytes.fromhex("08c379a0") + encode(["string"], ["no stake"])

    assert errors.describe(custom) == "RoundNotInState(roundId=1, current=1, required=4)"
    assert errors.describe(reason) == "no stake"
    assert errors.describe(b"") == "reverted without a reason"
    assert "unknown error" in errors.describe(b"\xde\xad\xbe\xef")


def test_fit_blocks__splits_by_gas_budget():
    calls = [txpath.Call("0x", b"", "0x", b"", gas) for gas in (40, 40, 40, 100, 5)]

    chunks = txpath._fit_blocks(calls, 100)  # 90 of 100 usable

    assert [[c.gas for c in chunk] for chunk in chunks] == [[40, 40], [40], [100], [5]]


# ---------------------------------------------------------------------- shared computations
def _split(rows: int, features: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, features, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(rows, generator=g) > 0.8).to(torch.float32)
    return Split(X=X, y=y)


def _clients(n: int, features: int) -> list[SimClient]:
    return [
        SimClient(i, f"0x{i:040x}", ClientData(train=_split(40, features, 100 + i), val=_split(13 + i, features, 200 + i)),
                  False, None)
        for i in range(n)
    ]


def test_exact_accuracy__equals_evaluate_accuracy():
    features = 6
    template = init_model(features, 0)
    states = [state_of(template)] + [
        train_local(template, _split(64, features, s), epochs=2, lr=0.05, seed=s) for s in range(5)
    ]
    for state in states:
        for client in _clients(12, features):
            expected = evaluate(load_state(template, state), client.data.val).accuracy

            actual = exact_accuracy(load_state(template, state), client.data.val)

            assert actual == expected  # bit-equal, not approximately


@pytest.mark.parametrize("score_name", ["accuracy", "balanced_accuracy", "auroc"])
def test_score_cache__shared_equals_separate(score_name):
    features = 5
    template = init_model(features, 1)
    models = [state_of(template), train_local(template, _split(80, features, 9), epochs=3, lr=0.05, seed=9)]
    cache = ScoreCache(template, score_name)
    clients = _clients(10, features)
    order = [(m, c) for m in range(2) for c in clients] + [(0, c) for c in clients]  # revisits hit the cache
    random.Random(0).shuffle(order)

    for m, client in order:
        expected = score(evaluate(load_state(template, models[m]), client.data.val), score_name)

        actual = cache.get(hash_state(models[m]), models[m], client)

        assert actual == expected


def test_aggregate_cache__shared_equals_each_voter_rebuilding(tmp_path):
    features = 4
    template = init_model(features, 2)
    store = UpdateStore(str(tmp_path / "u"), durable=False)
    reference = state_of(template)

    class P:  # an on-chain proposal as the voters read it
        def __init__(self, proposer, update_hash, sample_count):
            self.proposer, self.update_hash, self.sample_count = proposer, update_hash, sample_count

    proposals = []
    for i in range(4):
        update = train_local(template, _split(30 + i, features, i), epochs=1, lr=0.05, seed=i)
        proposals.append(P(f"0x{i:040x}", store.put_state(update), 30 + i))
    cache = AggregateCache(store)

    shared = [cache.get(proposals, reference) for _ in range(5)]
    separate = [build_aggregate(store, proposals, reference) for _ in range(5)]

    for (agg_a, hash_a, problem_a), (agg_b, hash_b, problem_b) in zip(shared, separate):
        assert hash_a == hash_b == hash_state(fedavg([(store.load_update(p.update_hash, reference), p.sample_count)
                                                      for p in proposals]))
        assert problem_a == problem_b == ""
        assert all(torch.equal(agg_a[k], agg_b[k]) for k in agg_b)
