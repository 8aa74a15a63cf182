"""Gas of one whole round as a function of the number of registered clients (a helper, not a
command: `ape run` skips modules whose names start with `_`).

    from scripts._gas_scaling import measure_round_gas, anvil_account_factory
    result = measure_round_gas(project, anvil_account_factory(accounts), clients=1000)
    result = measure_round_gas(project, anvil_account_factory(accounts), clients=100_000,
                               register="storage", ballots="mixed")

`measure_round_gas` deploys a fresh TestToken, StakeRegistry, ProposalPool and VotingRound with
the default parameters of SPEC.md, registers `clients` clients with 64 tokens each, funds the
pool, and plays one round in which every proposer proposes and every voter commits and reveals,
and returns the gas of every call. Ballots:
- "one-dissent": every voter accepts every proposal but one, which rejects every proposal
  (settlement unlocks and rewards every winner, slashes one voter, sweeps);
- "mixed": voter i accepts proposal j with probability 0.7 for even j and 0.3 for odd j (seeded):
  even proposals are accepted, odd ones rejected, and nearly every voter is on the losing side of
  some proposals, so settlement slashes, unlocks and rewards nearly every voter (its heaviest path).

With `register="storage"` the clients are registered by writing, on anvil (`anvil_setStorageAt`),
exactly the storage that their deposits would write (`registration_writes`; `verify_fast_registration`
checks it slot by slot against real deposits); the drawn clients then act through anvil's
impersonation. docs/GAS.md records the numbers measured with it.
"""
import random
import re
from statistics import mean
from typing import Callable, Sequence, Union

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from fl.protocol.params import TOKEN, ProtocolParams

CLIENT_STAKE = 64 * TOKEN
BLOCK_GAS_LIMIT = 30_000_000

#: VotingRound.Params defaults (SPEC.md), taken from the simulation's own fl.chain.ProtocolParams.
PARAM_NAMES = (
    "proposerFractionBps", "maxProposers", "maxVoters", "proposerStake", "voterStake",
    "proposerReward", "proposalPeriod", "commitPeriod", "revealPeriod", "seedBlockDelay",
)
DEFAULT_PARAMS = dict(zip(PARAM_NAMES, ProtocolParams().as_struct()))
INITIAL_MODEL = b"\x01" * 32
BALLOTS = ("one-dissent", "mixed")

# Storage slots (solc layout: inherited contracts' variables first; immutables take no slot).
# StakeRegistry: Ownable._owner 0, ReentrancyGuard._status 1, _votingRound 2, _proposalPool 3,
# _totalStaked 4, _active 5 (length; element i at keccak(5) + i), _accounts 6, _members 7.
REGISTRY_TOTAL_STAKED, REGISTRY_ACTIVE, REGISTRY_ACCOUNTS, REGISTRY_MEMBERS = 4, 5, 6, 7
# TestToken (OpenZeppelin ERC20): _balances 0, _allowances 1, _totalSupply 2.
TOKEN_BALANCES, TOKEN_TOTAL_SUPPLY = 0, 2

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


# ---------------------------------------------------------------- fast registration
def fake_clients(n: int) -> list[str]:
    """`n` distinct client addresses nobody holds a key for (acted for through impersonation)."""
    return [to_checksum_address(keccak(b"stakefl gas client" + i.to_bytes(8, "big"))[-20:]) for i in range(n)]


def _mapping_slot(key: str, slot: int) -> int:
    return int.from_bytes(keccak(encode(["address", "uint256"], [key, slot])), "big")


def registration_writes(registry: str, token: str, clients: Sequence[str], stake: int,
                        supply_before: int, registry_balance_before: int) -> list[tuple[str, int, int]]:
    """The storage `deposit(stake)` by each of `clients` (first deposits, in order, into an empty
    registry) leaves behind, as (contract, slot, value): the active list and its length,
    `_members[c] = {indexPlusOne: i + 1, registered: true, removed: false}`,
    `_accounts[c] = {stake, locked: 0}`, `_totalStaked`, and in the token the registry's balance
    and the total supply (each client's tokens were minted to it and moved to the registry)."""
    n, total = len(clients), stake * len(clients)
    active_base = int.from_bytes(keccak(REGISTRY_ACTIVE.to_bytes(32, "big")), "big")
    writes = [(registry, REGISTRY_ACTIVE, n), (registry, REGISTRY_TOTAL_STAKED, total)]
    for i, c in enumerate(clients):
        writes.append((registry, active_base + i, int(c, 16)))
        writes.append((registry, _mapping_slot(c, REGISTRY_MEMBERS), (i + 1) | (1 << 64)))  # uint64, bool, bool
        writes.append((registry, _mapping_slot(c, REGISTRY_ACCOUNTS), stake))  # uint128 stake, uint128 locked
    writes.append((token, _mapping_slot(registry, TOKEN_BALANCES), registry_balance_before + total))
    writes.append((token, TOKEN_TOTAL_SUPPLY, supply_before + total))
    return writes


def fast_register(provider, registry, token, clients: Sequence[str], stake: int = CLIENT_STAKE,
                  batch: int = 5_000) -> None:
    """Register `clients` in a fresh `registry` by writing `registration_writes` on anvil, in JSON-RPC batches."""
    if registry.activeCount() != 0:
        raise ValueError("fast_register needs a registry without clients")
    writes = registration_writes(registry.address, token.address, clients, stake, token.totalSupply(),
                                 token.balanceOf(registry))
    requests = [("anvil_setStorageAt", [contract, hex(slot), "0x" + value.to_bytes(32, "big").hex()])
                for contract, slot, value in writes]
    web3_provider = provider.web3.provider
    for start in range(0, len(requests), batch):
        for response in web3_provider.make_batch_request(requests[start : start + batch]):
            if "error" in response:
                raise RuntimeError(f"anvil_setStorageAt failed: {response['error']}")


def _storage(provider, address: str, slot: int) -> int:
    return int(provider.make_request("eth_getStorageAt", [address, hex(slot), "latest"]), 16)


def verify_fast_registration(project, deployer, clients: Sequence, stake: int = CLIENT_STAKE) -> dict:
    """Register `clients` (funded accounts) once with real deposits and once with `fast_register`,
    each in a fresh deployment, and compare every storage slot the writes touch, and the views.
    Raises AssertionError on any difference; returns {"clients": n, "slots": slots compared}."""
    from ape import chain

    provider = chain.provider
    addresses = [c.address for c in clients]
    real = _deploy(project, deployer, DEFAULT_PARAMS)
    for c in clients:
        real["token"].mint(c, stake, sender=c)
        real["token"].approve(real["registry"], stake, sender=c)
        real["registry"].deposit(stake, sender=c)
    fast = _deploy(project, deployer, DEFAULT_PARAMS)
    fast_register(provider, fast["registry"], fast["token"], addresses, stake)

    def state(d):
        registry, token = d["registry"], d["token"]
        writes = registration_writes(registry.address, token.address, addresses, stake, 0, 0)
        slots = [(_storage(provider, contract, slot), contract == registry.address, slot) for contract, slot, _ in writes]
        # the token slots' positions depend on the registry's address: compare values in order
        return [value for value, _, _ in slots], {
            "active": list(registry.activeClients()),
            "stakes": [(registry.stakeOf(a), registry.lockedOf(a), registry.isActive(a), registry.isRemoved(a))
                       for a in addresses],
            "totalStaked": registry.totalStaked(),
            "unassigned": registry.unassigned(),
            "registryBalance": token.balanceOf(registry),
            "allowances": [token.allowance(a, registry) for a in addresses],
        }

    real_slots, real_views = state(real)
    fast_slots, fast_views = state(fast)
    real_views["supplyGrowth"] = real["token"].totalSupply()
    fast_views["supplyGrowth"] = fast["token"].totalSupply()
    assert fast_slots == real_slots, "storage written by fast_register differs from real deposits"
    assert fast_views == real_views, (fast_views, real_views)
    return {"clients": len(clients), "slots": len(real_slots)}


# ---------------------------------------------------------------- one round
def _stats(gas: list) -> dict:
    return {"count": len(gas), "max": max(gas), "mean": round(mean(gas)), "total": sum(gas)}


def _deploy(project, deployer, params: dict) -> dict:
    token = project.TestToken.deploy(sender=deployer)
    registry = project.StakeRegistry.deploy(token, sender=deployer)
    pool = project.ProposalPool.deploy(token, registry, sender=deployer)
    voting = project.VotingRound.deploy(registry, pool, params, INITIAL_MODEL, sender=deployer)
    registry.bind(voting, pool, sender=deployer)
    pool.bind(voting, sender=deployer)
    return {"token": token, "registry": registry, "pool": pool, "voting": voting}


def ballot_masks(voters: int, proposals: int, kind: str, seed: int = 0) -> list[int]:
    """One ballot (acceptMask) per voter for `kind` in BALLOTS (see the module docstring)."""
    everything = (1 << proposals) - 1
    if kind == "one-dissent":
        return [everything] * (voters - 1) + [0 if voters > 1 else everything]
    if kind != "mixed":
        raise ValueError(f"ballots must be one of {BALLOTS}, got {kind!r}")
    rng = random.Random(seed)
    return [sum(1 << j for j in range(proposals) if rng.random() < (0.7 if j % 2 == 0 else 0.3))
            for _ in range(voters)]


def measure_round_gas(project, accounts_or_factory: AccountsOrFactory, clients: int, params: dict = None,
                      register: str = "deposits", ballots: str = "one-dissent", seed: int = 0) -> dict:
    """Deploy the protocol, register `clients` clients, play one full round and return its gas.

    Args:
        project: Ape's `project` (needs TestToken, StakeRegistry, ProposalPool, VotingRound).
        accounts_or_factory: a sequence of funded, unlocked accounts (the first deploys; with real
            deposits at least `clients + 1`), or a callable `n -> sequence of n such accounts`
            (see `anvil_account_factory` for more clients than Ape's test accounts).
        clients: registered clients (>= 2).
        params: overrides of DEFAULT_PARAMS (with seedBlockDelay > 0 the round opens once its
            seed block is mined).
        register: "deposits" (each client deposits) or "storage" (`fast_register`, anvil only).
        ballots: "one-dissent" or "mixed" (module docstring).
        seed: seed of the mixed ballots.

    Returns:
        {"clients": n, "proposers": k, "voters": v, "ballots": kind, "register": how,
         "calls": {name: {"count", "max", "mean", "total"}} for deposit (real deposits only),
                  openRound, propose, commitVote, revealVote, settle,
         "round_gas": gas of openRound + every propose/commit/reveal + settle,
         "max_call_gas": the largest single call of the round,
         "fits_block": max_call_gas <= 30,000,000,
         "accepted": proposals accepted}
    """
    from ape import accounts as ape_accounts
    from ape import chain

    if register not in ("deposits", "storage"):
        raise ValueError(f"register must be 'deposits' or 'storage', got {register!r}")
    fast = register == "storage"
    if clients < 2:
        raise ValueError(f"a round needs at least 2 clients, got {clients}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    need = 1 if fast else clients + 1
    accts = accounts_or_factory(need) if callable(accounts_or_factory) else accounts_or_factory
    if len(accts) < need:
        raise ValueError(f"need {need} accounts (deployer + clients), got {len(accts)}")
    deployer = accts[0]
    # one second per block on anvil, so that a slow machine cannot run a phase past its deadline
    anvil = chain.provider.name == "foundry"
    if anvil:
        chain.provider.make_request("anvil_setBlockTimestampInterval", [1])
    try:
        return _play_round(project, chain, ape_accounts, accts, deployer, clients, p, fast, register, ballots, seed)
    finally:
        if anvil:
            chain.provider.make_request("anvil_removeBlockTimestampInterval", [])


def _play_round(project, chain, ape_accounts, accts, deployer, clients, p, fast, register, ballots, seed) -> dict:
    d = _deploy(project, deployer, p)
    token, registry, pool, voting = d["token"], d["registry"], d["pool"], d["voting"]
    token.mint(pool, p["proposerReward"] * p["maxProposers"], sender=deployer)  # proposers get paid

    gas = {name: [] for name in ("deposit", "openRound", "propose", "commitVote", "revealVote", "settle")}
    if fast:
        fast_register(chain.provider, registry, token, fake_clients(clients))
        actor = _impersonator(ape_accounts, chain.provider)
    else:
        members = list(accts[1 : clients + 1])
        by_address = {a.address: a for a in members}
        actor = by_address.__getitem__
        token.mint(deployer, CLIENT_STAKE * clients, sender=deployer)
        for member in members:
            token.transfer(member, CLIENT_STAKE, sender=deployer)
            token.approve(registry, CLIENT_STAKE, sender=member)
            gas["deposit"].append(registry.deposit(CLIENT_STAKE, sender=member).gas_used)

    seed_block = voting.nextSeedBlock()  # seedBlockDelay > 0: openRound needs that block mined
    if seed_block and chain.blocks.height < seed_block:
        chain.mine(seed_block - chain.blocks.height)
    gas["openRound"].append(_send(voting.openRound, sender=deployer).gas_used)
    round_id = voting.currentRoundId()
    info = voting.getRound(round_id)
    proposers = [actor(a) for a in voting.proposersOf(round_id)]
    voters = [actor(a) for a in voting.votersOf(round_id)]

    for i, proposer in enumerate(proposers):
        update = keccak(encode(["uint256", "uint256"], [round_id, i]))
        gas["propose"].append(_send(voting.propose, round_id, update, 100 + i, sender=proposer).gas_used)
    _advance_to(chain, info.proposalDeadline)
    masks = ballot_masks(len(voters), len(proposers), ballots, seed)
    plan = []
    for i, (voter, mask) in enumerate(zip(voters, masks)):
        salt = keccak(encode(["uint256", "uint256"], [seed, i]))
        commitment = keccak(encode(["uint256", "address", "uint256", "bytes32", "bytes32"],
                                   [round_id, voter.address, mask, INITIAL_MODEL, salt]))
        gas["commitVote"].append(_send(voting.commitVote, round_id, commitment, sender=voter).gas_used)
        plan.append((voter, mask, salt))
    _advance_to(chain, info.commitDeadline)
    for voter, mask, salt in plan:
        gas["revealVote"].append(_send(voting.revealVote, round_id, mask, INITIAL_MODEL, salt, sender=voter).gas_used)
    _advance_to(chain, info.revealDeadline)
    gas["settle"].append(_send(voting.settle, round_id, sender=deployer).gas_used)

    calls = {name: _stats(values) for name, values in gas.items() if values}
    round_names = ("openRound", "propose", "commitVote", "revealVote", "settle")
    max_call = max(calls[name]["max"] for name in round_names if name in calls)
    return {
        "clients": clients,
        "proposers": len(proposers),
        "voters": len(voters),
        "ballots": ballots,
        "register": register,
        "calls": calls,
        "round_gas": sum(calls[name]["total"] for name in round_names if name in calls),
        "max_call_gas": max_call,
        "fits_block": max_call <= BLOCK_GAS_LIMIT,
        "accepted": voting.getRound(round_id).acceptedCount,
    }


def _send(method, *args, sender):
    """`method(*args, sender=sender)`; if the node has not mined it within Ape's acceptance timeout
    (a busy machine, or anvil's automine missing it: foundry-rs/foundry#10122), mine a block and
    wait for that same transaction (never resend)."""
    from ape import chain
    from ape.exceptions import TransactionNotFoundError

    try:
        return method(*args, sender=sender)
    except TransactionNotFoundError as exc:
        found = re.search(r"0x[0-9a-fA-F]{64}", str(exc))
        if found is None:
            raise
        chain.provider.mine()
        receipt = chain.provider.get_receipt(found.group(0), timeout=300)
        receipt.raise_for_status()
        return receipt


def _impersonator(ape_accounts, provider, balance_wei: int = 10**21) -> Callable[[str], object]:
    """address -> an impersonated account with ether for gas (anvil)."""

    def act_as(address: str):
        provider.set_balance(address, balance_wei)
        return ape_accounts.test_accounts.impersonate_account(address)

    return act_as


def _advance_to(chain, timestamp: int) -> None:
    """Make the next block's timestamp at least `timestamp` (development chains only)."""
    if chain.pending_timestamp < timestamp:
        chain.pending_timestamp = timestamp
