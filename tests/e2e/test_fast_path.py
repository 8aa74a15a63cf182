"""The fast transaction path (fl/chain/txpath.py) on the embedded chain: a reverted transaction
raises with the contract's reason, and one round sent on the fast path ends exactly as the
same round sent through Ape's ordinary path (same decisions, same stakes, same events)."""

import pytest
from ape import chain
from eth_hash.auto import keccak

from fl.chain.connection import deployer_account, development_accounts, quiet_logging
from fl.chain.ledger import _jsonable, ProtocolChain
from fl.chain.txpath import TransactionFailed
from fl.protocol.params import ProtocolParams
from fl.protocol.votes import Ballot

CLIENTS = 6


@pytest.fixture(scope="module")
def deployed():
    quiet_logging()
    deployer = deployer_account()
    params = ProtocolParams(proposer_fraction=0.34, proposal_period=600, commit_period=600, reveal_period=600)
    protocol = ProtocolChain.deploy(deployer, params, b"\x01" * 32, fast=True)
    accounts = development_accounts(CLIENTS, funder=deployer)
    protocol.enroll(accounts, 64, minter=deployer)
    return deployer, protocol, accounts


def twin(protocol: ProtocolChain, accounts, fast: bool) -> ProtocolChain:
    """The same contracts and accounts, on the fast or on Ape's path (a fresh nonce cache)."""
    return ProtocolChain(protocol.token, protocol.registry, protocol.pool, protocol.voting, accounts, fast=fast)


def play_round(protocol: ProtocolChain, deployer) -> dict:
    """Open, propose, commit, reveal (mixed ballots: voter i rejects proposal i mod P, the last voter
    rejects everything, one voter attests another parent), settle; return what the chain says."""
    opening = protocol.open_round(deployer)
    r = opening.round_id
    protocol.propose(r, [(a, keccak(a.encode()), 100 + i) for i, a in enumerate(opening.proposers)])
    protocol.advance_to(opening.proposal_deadline)
    count = len(protocol.proposals_of(r))
    every = (1 << count) - 1
    ballots = [
        Ballot(a, 0 if i == len(opening.voters) - 1 else every & ~(1 << (i % count)),
               b"\x02" * 32 if i == 0 else b"\x01" * 32, keccak(b"salt" + a.encode()))
        for i, a in enumerate(opening.voters)
    ]
    protocol.commit(r, [(b.voter, b.commitment(r)) for b in ballots])
    protocol.advance_to(opening.commit_deadline)
    protocol.reveal(r, ballots)
    protocol.advance_to(opening.reveal_deadline)
    settlement = protocol.settle(r, deployer)
    holders = [*opening.proposers, *opening.voters]
    return {
        "opening": (opening.round_id, opening.proposers, opening.voters, opening.removed),
        "decision": settlement.decision,
        "votes": (settlement.accepted_mask, settlement.accepted_count, settlement.revealed_votes),
        "proposals": settlement.proposals,
        "global_model_hash": settlement.global_model_hash,
        "outcomes": settlement.outcomes,
        "stakes": {a: protocol.stake_of(a) for a in holders},
        "pool": protocol.pool_balance(),
        "log": protocol.drain_events(),
    }


def ape_decoded(tx_hashes) -> list[dict]:
    """Ape's own decoding of these transactions' events, in the event log's shape."""
    out = []
    for tx in tx_hashes:
        receipt = chain.provider.get_receipt(tx)
        out.extend(
            {"block": int(receipt.block_number), "tx": str(receipt.txn_hash), "event": log.event_name,
             "args": {k: _jsonable(v) for k, v in log.event_arguments.items()}}
            for log in receipt.events
        )
    return out


def test_fast_path__revert_raises_with_the_contracts_reason(deployed):
    deployer, protocol, accounts = deployed
    snapshot = chain.snapshot()
    try:
        fast = twin(protocol, accounts, fast=True)
        opening = fast.open_round(deployer)

        with pytest.raises(TransactionFailed) as early:
            fast.settle(opening.round_id, deployer)  # the reveal deadline has not passed
        with pytest.raises(TransactionFailed) as wrong_role:
            fast.propose(opening.round_id, [(opening.voters[0], b"\x05" * 32, 10)])  # a voter cannot propose
    finally:
        chain.restore(snapshot)

    assert f"RoundNotInState(roundId={opening.round_id}, current=1, required=4)" in str(early.value)
    assert str(early.value).startswith(f"settle from {deployer.address} failed")
    assert f"RoundNotSelected(roundId={opening.round_id}, client={opening.voters[0]}, role=1)" in str(wrong_role.value)


def test_fast_path__round_equals_apes_path(deployed):
    # The round seed is keccak(blockhash(parent), prevrandao, ...); prevrandao is 0 while the
    # embedded chain executes, so both paths, started from the same block, draw the same roles.
    deployer, protocol, accounts = deployed
    start = chain.snapshot()  # (Ape's test isolation undoes the rest after the module)
    expected = play_round(twin(protocol, accounts, fast=True), deployer)
    apes_view_of_fast_log = ape_decoded(dict.fromkeys(e["tx"] for e in expected["log"]))
    chain.restore(start)

    actual = play_round(twin(protocol, accounts, fast=False), deployer)

    assert expected["log"] == apes_view_of_fast_log  # the event log: same events, same shape
    assert len(expected["opening"][1]) >= 1 and len(expected["opening"][2]) >= 2
    assert actual["opening"] == expected["opening"]
    assert actual["decision"] == expected["decision"]
    assert actual["votes"] == expected["votes"]
    assert actual["proposals"] == expected["proposals"] and len(expected["proposals"]) == len(expected["opening"][1])
    assert actual["global_model_hash"] == expected["global_model_hash"]
    assert actual["outcomes"] == expected["outcomes"]
    assert actual["stakes"] == expected["stakes"]
    assert actual["pool"] == expected["pool"]
    assert [(e["event"], e["args"]) for e in actual["log"]] == [(e["event"], e["args"]) for e in expected["log"]]
