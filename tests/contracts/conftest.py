"""Fixtures for the contract tests: role-named accounts, the deployed protocol, factories.

Ape isolates every test (chain snapshot/restore), so the session-scoped deployment below is
shared and each test starts from the same freshly bound contracts.
"""
import pytest
from ape.exceptions import DecodingError
from ape_ethereum.ecosystem import Ethereum

from protocol_model import DEFAULT_PARAMS, INITIAL_MODEL, TOKEN, Role, RoundState, accept_all, commitment_of, update_of


# ---------------------------------------------------------------- workaround
_decode_returndata = Ethereum.decode_returndata


def _decode_returndata_tolerant(self, abi, raw_data):
    """`ape test --gas` on anvil traces view calls too, and for a view returning a struct the
    trace may carry empty returndata; ape-ethereum 0.8.51 then raises TypeError (not the
    DecodingError it handles while enriching the trace) and the test fails. Raise DecodingError."""
    try:
        return _decode_returndata(self, abi, raw_data)
    except TypeError as err:
        if raw_data is None or len(bytes(raw_data)) == 0:
            raise DecodingError(f"empty returndata for {abi.name}") from err
        raise


Ethereum.decode_returndata = _decode_returndata_tolerant


# ---------------------------------------------------------------- accounts
@pytest.fixture(scope="session")
def owner(accounts):
    """Deployer and owner of the registry and the pool."""
    return accounts[0]


@pytest.fixture(scope="session")
def outsider(accounts):
    """An account that never stakes."""
    return accounts[1]


@pytest.fixture(scope="session")
def round_stand_in(accounts):
    """An EOA bound as the "VotingRound" of a stand-alone registry and pool (unit tests)."""
    return accounts[2]


@pytest.fixture(scope="session")
def clients(accounts):
    """Accounts that take part as clients (17 of the 20 test accounts)."""
    return [accounts[i] for i in range(3, len(accounts))]


@pytest.fixture(scope="session")
def alice(clients):
    return clients[0]


@pytest.fixture(scope="session")
def bob(clients):
    return clients[1]


# ---------------------------------------------------------------- contracts
@pytest.fixture(scope="session")
def params():
    """Default deployment parameters as a dict (SPEC.md explains each)."""
    return dict(DEFAULT_PARAMS)


@pytest.fixture(scope="session")
def token(project, owner):
    return project.TestToken.deploy(sender=owner)


@pytest.fixture(scope="session")
def deploy_protocol(project, owner, token):
    """Factory: deploy registry, pool and round with `params` overrides, bound as in SPEC.md."""

    def deploy(bind=True, initial_model=INITIAL_MODEL, **overrides):
        p = {**DEFAULT_PARAMS, **overrides}
        registry = project.StakeRegistry.deploy(token, sender=owner)
        pool = project.ProposalPool.deploy(token, registry, sender=owner)
        voting = project.VotingRound.deploy(registry, pool, p, initial_model, sender=owner)
        if bind:
            registry.bind(voting, pool, sender=owner)
            pool.bind(voting, sender=owner)
        return registry, pool, voting

    return deploy


@pytest.fixture(scope="session")
def protocol(deploy_protocol):
    return deploy_protocol()


@pytest.fixture(scope="session")
def registry(protocol):
    return protocol[0]


@pytest.fixture(scope="session")
def pool(protocol):
    return protocol[1]


@pytest.fixture(scope="session")
def voting(protocol):
    return protocol[2]


@pytest.fixture(scope="session")
def solo(project, owner, token, round_stand_in):
    """A registry and a pool bound to the `round_stand_in` EOA instead of a VotingRound."""
    registry = project.StakeRegistry.deploy(token, sender=owner)
    pool = project.ProposalPool.deploy(token, registry, sender=owner)
    registry.bind(round_stand_in, pool, sender=owner)
    pool.bind(round_stand_in, sender=owner)
    return registry, pool


# ---------------------------------------------------------------- factories
@pytest.fixture(scope="session")
def fund(token):
    """Factory: mint `amount` to `account` and approve `spender` for it."""

    def fund(account, spender, amount=64 * TOKEN):
        token.mint(account, amount, sender=account)
        token.approve(spender, amount, sender=account)

    return fund


@pytest.fixture(scope="session")
def stake(fund, registry):
    """Factory: fund and deposit `amount` for each account; returns the accounts."""

    def stake(accounts_, amount=64 * TOKEN):
        for a in accounts_:
            fund(a, registry, amount)
            registry.deposit(amount, sender=a)
        return accounts_

    return stake


@pytest.fixture(scope="session")
def advance_to(chain, voting):
    """Factory: move the clock so that the next transaction runs in `target` state of `round_id`."""

    def advance_to(round_id, target):
        info = voting.getRound(round_id)
        deadline = {
            RoundState.Committing: info.proposalDeadline,
            RoundState.Revealing: info.commitDeadline,
            RoundState.Settleable: info.revealDeadline,
        }[target]
        if chain.pending_timestamp < deadline:
            chain.pending_timestamp = deadline

    return advance_to


@pytest.fixture(scope="session")
def open_round(voting, owner):
    """Factory: open the next round; returns (round_id, proposers, voters, tx)."""

    def open_round(sender=None):
        tx = voting.openRound(sender=sender or owner)
        round_id = voting.currentRoundId()
        by_address = {a.address: a for a in _all_accounts()}
        proposers = [by_address[a] for a in voting.proposersOf(round_id)]
        voters = [by_address[a] for a in voting.votersOf(round_id)]
        return round_id, proposers, voters, tx

    return open_round


@pytest.fixture(scope="session")
def commit(voting):
    """Factory: commit ballot `mask` and `parent` hash for `voter`, with a salt derived from the
    voter unless given; returns the salt."""

    def commit(round_id, voter, mask, parent=INITIAL_MODEL, salt=None):
        salt = salt or bytes.fromhex(voter.address[2:].lower().rjust(64, "0"))
        voting.commitVote(round_id, commitment_of(round_id, voter.address, mask, parent, salt), sender=voter)
        return salt

    return commit


@pytest.fixture(scope="session")
def play_round(voting, open_round, advance_to, commit):
    """Factory: run a whole round. `proposes(proposer)` -> bool; `votes(voter, proposals)` ->
    (acceptMask, parentHash), None for silence, or "commit-only" (commits, never reveals); by
    default every voter accepts every proposal and attests the recorded global model hash.
    Returns (round_id, proposers, voters, settle_tx)."""

    def play_round(proposes=lambda p: True, votes=None, settle=True):
        round_id, proposers, voters, _ = open_round()
        for p in proposers:
            if proposes(p):
                voting.propose(round_id, update_of(p.address), 100, sender=p)
        proposals = voting.getRound(round_id).proposalCount
        parent = voting.globalModelHash()
        advance_to(round_id, RoundState.Committing)
        plan = {}
        for v in voters:
            choice = votes(v, proposals) if votes else (accept_all(proposals), parent)
            if choice is None:
                continue
            if choice == "commit-only":
                commit(round_id, v, 0, parent)
                continue
            plan[v] = (choice, commit(round_id, v, *choice))
        advance_to(round_id, RoundState.Revealing)
        for v, ((mask, parent_hash), salt) in plan.items():
            voting.revealVote(round_id, mask, parent_hash, salt, sender=v)
        advance_to(round_id, RoundState.Settleable)
        tx = voting.settle(round_id, sender=voters[0] if voters else proposers[0]) if settle else None
        return round_id, proposers, voters, tx

    return play_round


def _all_accounts():
    from ape import accounts

    return list(accounts.test_accounts)


__all__ = ["Role"]
