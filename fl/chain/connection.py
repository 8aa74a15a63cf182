"""Accounts, the connected network, and attaching to deployed contracts after checking their code and wiring."""

from __future__ import annotations

from typing import Iterable, Sequence

from ape import chain, project
from ape.api import AccountAPI
from eth_account import Account
from fl.chain import txpath
from fl.chain.ledger import ProtocolChain, fast_sender
from fl.protocol.draw import simulated_client_key

# ---------------------------------------------------------------------- accounts and checks
def deployer_account() -> AccountAPI:
    """The development chain's first funded test account."""
    from ape import accounts

    return accounts.test_accounts[0]


CLIENT_ACCOUNT_OFFSET = 10_000  # Ape test-account indices of simulated clients (beyond the mnemonic's)


def development_accounts(count: int, funder: AccountAPI, ether_each: int = 10**20) -> list[AccountAPI]:
    """`count` simulated clients' Ape test accounts (keys derived from the index), each funded with ether."""
    from ape import accounts

    if not chain.provider.network.is_local:
        raise RuntimeError(
            "simulate needs a development network (the embedded test chain or a local anvil); "
            "for a public network use `ape run deploy` and `ape run client`"
        )
    created, unfunded = [], []
    for index in range(count):
        # keys derived from the client index: the same clients in every run and every process
        key = simulated_client_key(index)
        address = Account.from_key(key).address
        account = accounts.init_test_account(CLIENT_ACCOUNT_OFFSET + index, address, "0x" + key.hex())
        try:
            account.balance = ether_each
        except NotImplementedError:  # the embedded provider cannot set balances: send ether instead
            unfunded.append(account)
        created.append(account)
    _send_ether(funder, unfunded, ether_each)
    return created


def _send_ether(funder: AccountAPI, recipients: Sequence[AccountAPI], wei: int) -> None:
    """Transfer `wei` from `funder` to each recipient (signed by the funder; fast path where there is one)."""
    sender = fast_sender() if recipients else None
    if sender is None:
        for account in recipients:
            funder.transfer(account, wei)
        return
    key = bytes.fromhex(str(funder.private_key).removeprefix("0x"))
    sender.send([txpath.Call(str(funder.address), key, str(a.address), b"", 21_000, wei, "fund") for a in recipients])


def token_conservation(protocol: "ProtocolChain", holders: Iterable[str], minted: int) -> dict:
    """Token conservation on chain: wallets + registry + pool == minted; registry == stakes + unassigned."""
    holders = list(holders)
    stakes = sum(protocol.stake_of(a) for a in holders)
    wallets = sum(protocol.token_balance(a) for a in holders)
    registry_balance = protocol.token_balance(str(protocol.registry.address))
    pool_balance = protocol.pool_balance()
    unassigned = int(protocol.registry.unassigned())
    return {
        "minted": minted,
        "stakes": stakes,
        "wallets": wallets,
        "registry_balance": registry_balance,
        "pool_balance": pool_balance,
        "unassigned": unassigned,
        "conserved": wallets + registry_balance + pool_balance == minted
        and registry_balance == stakes + unassigned
        and int(protocol.registry.totalStaked()) == stakes,
    }


def network_name() -> str:
    return chain.provider.network_choice


def connected_to(network: str, host: str | None = None):
    """A context in which Ape is connected to `network` (e.g. ethereum:local:foundry), at `host` if given."""
    from ape import networks

    return networks.parse_network_choice(network, provider_settings={"host": host} if host else None)


def quiet_logging() -> None:
    """Ape logs every confirmed transaction at INFO; a simulation sends thousands."""
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)


# ---- attaching to deployed contracts
# `ape run deploy` records the addresses (fl/chain/deployments.py); `ape run client` attaches to them
# here, checks that each address holds this project's contract, and acts through one account.


class ContractCheckError(RuntimeError):
    """An address does not hold the protocol contract it should (wrong address, network or build)."""


# Ape contract types of the recorded names; the token is any ERC-20 (TestToken's ABI covers it).
_CONTRACT_TYPES = {"token": "TestToken", "registry": "StakeRegistry", "pool": "ProposalPool", "voting": "VotingRound"}


def _metadata_tail(code: bytes) -> bytes:
    """The CBOR metadata solc appends to runtime code (its last 2 bytes give its length).

    It holds the hash of the compiler's metadata (sources included) and no immutables, so equal
    tails mean "built from the same sources by the same compiler"."""
    if len(code) < 2:
        return b""
    length = int.from_bytes(code[-2:], "big")
    return code[-(length + 2):] if length + 2 <= len(code) else b""


def check_contract(name: str, address: str, *, exact: bool = True):
    """The Ape contract instance of recorded contract `name` at `address`, after checking that
    the chain holds code there and (if `exact`) that it is this project's build of it."""
    contract_type = getattr(project, _CONTRACT_TYPES[name]).contract_type
    code = bytes(chain.provider.get_code(address))
    if not code:
        raise ContractCheckError(
            f"no contract at {address} (the recorded {name}) on {chain.provider.network_choice}: wrong network, "
            "a local node that was restarted (its chain is gone: redeploy with `ape run deploy --force`), "
            "or a wrong address"
        )
    if exact:
        expected = bytes.fromhex((contract_type.runtime_bytecode.bytecode or "").removeprefix("0x"))
        if len(code) != len(expected) or _metadata_tail(code) != _metadata_tail(expected):
            raise ContractCheckError(
                f"the code at {address} is not this project's {_CONTRACT_TYPES[name]} "
                f"({len(code)} bytes, expected {len(expected)} with the same metadata hash); "
                "check the address, or rebuild and redeploy if the contracts changed"
            )
    return chain.contracts.instance_at(address, contract_type=contract_type)


def attach_protocol(token: str, registry: str, pool: str, voting: str, fast: bool = False) -> "ProtocolChain":
    """A ProtocolChain over recorded addresses, after checking the code and the wiring between them."""
    registry_c = check_contract("registry", registry)
    pool_c = check_contract("pool", pool)
    voting_c = check_contract("voting", voting)
    token_c = check_contract("token", token, exact=False)
    wiring = {
        "VotingRound.registry()": (str(voting_c.registry()), str(registry_c.address)),
        "VotingRound.proposalPool()": (str(voting_c.proposalPool()), str(pool_c.address)),
        "StakeRegistry.votingRound()": (str(registry_c.votingRound()), str(voting_c.address)),
        "StakeRegistry.token()": (str(registry_c.token()), str(token_c.address)),
        "ProposalPool.votingRound()": (str(pool_c.votingRound()), str(voting_c.address)),
    }
    wrong = [f"{k} is {got}, expected {want}" for k, (got, want) in wiring.items() if got.lower() != want.lower()]
    if wrong:
        raise ContractCheckError("the recorded contracts are not wired to each other: " + "; ".join(wrong))
    return ProtocolChain(token_c, registry_c, pool_c, voting_c, [], fast=fast)


def attach_by_voting_round(voting: str, fast: bool = False) -> "ProtocolChain":
    """Attach knowing only the VotingRound address (the others are read from it)."""
    voting_c = check_contract("voting", voting)
    registry = str(voting_c.registry())
    pool = str(voting_c.proposalPool())
    token = str(check_contract("registry", registry).token())
    return attach_protocol(token, registry, pool, voting, fast=fast)


def connected_chain_id() -> int:
    return int(chain.provider.chain_id)


def is_local_network() -> bool:
    return bool(chain.provider.network.is_local)


def provider_started_node() -> bool:
    """True if the provider started its own node (ape-foundry does when none was running): such a
    chain lives only as long as this process, so other participants cannot share it."""
    return getattr(chain.provider, "process", None) is not None or chain.provider.name == "test"


def head_block_number() -> int:
    return int(chain.blocks.head.number)
