"""Gas of one whole round as a function of the number of registered clients (a helper, not a
command: `ape run` skips modules whose names start with `_`).

    from scripts._gas_scaling import measure_round_gas, anvil_account_factory
    result = measure_round_gas(project, anvil_account_factory(accounts), clients=1000)

`measure_round_gas` deploys a fresh TestToken, StakeRegistry, ProposalPool and VotingRound with
the default parameters of SPEC.md, registers `clients` clients with 64 tokens each, funds the
pool, and plays one round in which every proposer proposes and every voter commits and reveals
(one voter dissents, so settlement takes the heaviest path: every winner is unlocked *and*
rewarded, the dissenter is slashed, the rest is swept to the pool). It returns the gas of every
call. docs/GAS.md records the numbers measured with it on anvil.
"""
from statistics import mean
from typing import Callable, Sequence, Union

from fl.protocol.params import ProtocolParams

TOKEN = 10**18
CLIENT_STAKE = 64 * TOKEN
BLOCK_GAS_LIMIT = 30_000_000

#: VotingRound.Params defaults (SPEC.md), taken from the simulation's own fl.chain.ProtocolParams.
PARAM_NAMES = (
    "proposerFractionBps", "maxProposers", "maxVoters", "proposerStake", "voterStake",
    "proposerReward", "proposalPeriod", "commitPeriod", "revealPeriod",
)
DEFAULT_PARAMS = dict(zip(PARAM_NAMES, ProtocolParams().as_struct()))
INITIAL_MODEL = b"\x01" * 32
UPDATE = b"\x11" * 32
ACCEPT, REJECT = 1, 2

AccountsOrFactory = Union[Sequence, Callable[[int], Sequence]]


def anvil_account_factory(accounts, balance_wei: int = 10**21) -> Callable[[int], list]:
    """A factory `n -> n accounts`: Ape's funded test accounts first, then accounts generated
    with `accounts.test_accounts.generate_test_account()` whose ether balance is set on the node
    (anvil's `anvil_setBalance`, through Ape's `account.balance = ...`)."""

    def make(n: int) -> list:
        pool = list(accounts.test_accounts)[:n]
        while len(pool) < n:
            extra = accounts.test_accounts.generate_test_account()
            extra.balance = balance_wei
            pool.append(extra)
        return pool

    return make


def _stats(gas: list) -> dict:
    return {"count": len(gas), "max": max(gas), "mean": round(mean(gas)), "total": sum(gas)}


def measure_round_gas(project, accounts_or_factory: AccountsOrFactory, clients: int, params: dict = None) -> dict:
    """Deploy the protocol, register `clients` clients, play one full round and return its gas.

    Args:
        project: Ape's `project` (needs TestToken, StakeRegistry, ProposalPool, VotingRound).
        accounts_or_factory: a sequence of at least `clients + 1` funded, unlocked accounts (the
            first deploys), or a callable `n -> sequence of n such accounts` (see
            `anvil_account_factory` for more clients than Ape's test accounts).
        clients: registered clients (>= 2).
        params: overrides of DEFAULT_PARAMS.

    Returns:
        {"clients": n, "proposers": k, "voters": v,
         "calls": {name: {"count", "max", "mean", "total"}} for deposit, openRound, propose,
                  commitVote, revealVote, settle,
         "round_gas": gas of openRound + every propose/commit/reveal + settle,
         "max_call_gas": the largest single call of the round,
         "fits_block": max_call_gas <= 30,000,000}
    """
    from ape import chain

    if clients < 2:
        raise ValueError(f"a round needs at least 2 clients, got {clients}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    accts = accounts_or_factory(clients + 1) if callable(accounts_or_factory) else accounts_or_factory
    if len(accts) < clients + 1:
        raise ValueError(f"need {clients + 1} accounts (deployer + clients), got {len(accts)}")
    deployer, members = accts[0], list(accts[1 : clients + 1])
    by_address = {a.address: a for a in members}

    token = project.TestToken.deploy(sender=deployer)
    registry = project.StakeRegistry.deploy(token, sender=deployer)
    pool = project.ProposalPool.deploy(token, registry, sender=deployer)
    voting = project.VotingRound.deploy(registry, pool, p, INITIAL_MODEL, sender=deployer)
    registry.bind(voting, pool, sender=deployer)
    pool.bind(voting, sender=deployer)
    token.mint(pool, p["proposerReward"] * p["maxProposers"], sender=deployer)  # proposers get paid

    gas = {name: [] for name in ("deposit", "openRound", "propose", "commitVote", "revealVote", "settle")}
    token.mint(deployer, CLIENT_STAKE * clients, sender=deployer)
    for member in members:
        token.transfer(member, CLIENT_STAKE, sender=deployer)
        token.approve(registry, CLIENT_STAKE, sender=member)
        gas["deposit"].append(registry.deposit(CLIENT_STAKE, sender=member).gas_used)

    tx = voting.openRound(sender=deployer)
    gas["openRound"].append(tx.gas_used)
    round_id = voting.currentRoundId()
    info = voting.getRound(round_id)
    proposers = [by_address[a] for a in voting.proposersOf(round_id)]
    voters = [by_address[a] for a in voting.votersOf(round_id)]

    for proposer in proposers:
        gas["propose"].append(voting.propose(round_id, UPDATE, 100, sender=proposer).gas_used)
    _advance_to(chain, info.proposalDeadline)
    plan = []
    for i, voter in enumerate(voters):
        vote = REJECT if i == len(voters) - 1 and len(voters) > 1 else ACCEPT  # one dissenter
        salt = i.to_bytes(32, "big")
        commitment = voting.commitmentFor(round_id, voter, vote, UPDATE, salt)
        gas["commitVote"].append(voting.commitVote(round_id, commitment, sender=voter).gas_used)
        plan.append((voter, vote, salt))
    _advance_to(chain, info.commitDeadline)
    for voter, vote, salt in plan:
        gas["revealVote"].append(voting.revealVote(round_id, vote, UPDATE, salt, sender=voter).gas_used)
    _advance_to(chain, info.revealDeadline)
    gas["settle"].append(voting.settle(round_id, sender=deployer).gas_used)

    calls = {name: _stats(values) for name, values in gas.items() if values}
    round_names = ("openRound", "propose", "commitVote", "revealVote", "settle")
    max_call = max(calls[name]["max"] for name in round_names if name in calls)
    return {
        "clients": clients,
        "proposers": len(proposers),
        "voters": len(voters),
        "calls": calls,
        "round_gas": sum(calls[name]["total"] for name in round_names if name in calls),
        "max_call_gas": max_call,
        "fits_block": max_call <= BLOCK_GAS_LIMIT,
    }


def _advance_to(chain, timestamp: int) -> None:
    """Make the next block's timestamp at least `timestamp` (development chains only)."""
    if chain.pending_timestamp < timestamp:
        chain.pending_timestamp = timestamp
