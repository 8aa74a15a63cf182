"""VotingRound's draw of proposers and voters, in plain Python (no chain, no Ape).

The loops without a chain (FedAvg and the robust aggregators, ``fl.simulation.baselines``) draw
their proposers with this replay, so that a chainless run and a protocol run of the same seed face
the same proposers in every round until the protocol removes someone (the chainless ledger never
does). Before, the chainless loop drew with its own generator and, on Fashion-MNIST at ratio
0.4, the chainless columns faced 29-38% attackers where the protocol's faced 42% (seeds 0-1).

What the contract does (contracts/VotingRound.sol, seedBlockDelay = 0; SPEC.md "Randomness"):

- seed_0 = keccak256(abi.encode(voting, initialModelHash)); round r's seed is
  keccak256(abi.encode(seed_{r-1}, saltMix_{r-1}, r, voting)), with saltMix_0 = 0;
- saltMix_r = XOR over the voters who revealed in round r of keccak256(abi.encode(voter, salt));
- the draw is a partial Fisher-Yates shuffle of the active list: pick i swaps position i with
  i + keccak256(abi.encode(seed, i)) mod (n - i); the first k picks propose, the next v vote
  (k = floor(n x fraction) in [1, min(maxProposers, n - 1)], v = min(n - k, maxVoters)).

A run on a fresh development chain has fixed inputs: the deployer is Ape's first test account
(the test mnemonic), which deploys TestToken, StakeRegistry, ProposalPool, then VotingRound
(``fl.chain.ledger.ProtocolChain.deploy``), so VotingRound's address is the deployer's CREATE
address at nonce 3; the clients' keys derive from their index (``simulated_client_key``), join
the registry in index order, and every voter reveals with a salt from the run's seeded stream.
tests/e2e/test_simulation_flow.py checks the replay against a real run's events, tests/protocol/
test_draw.py against the contract tests' own model (tests/contracts/protocol_model.py).
"""

from __future__ import annotations

import random
from typing import Sequence

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak, to_canonical_address, to_checksum_address

from fl.protocol.params import ProtocolParams

__all__ = [
    "DEVELOPMENT_DEPLOYER", "VOTING_DEPLOY_NONCE", "ContractDraw", "create_address", "development_voting_address",
    "draw", "initial_seed", "round_seed", "salt_share", "selection_sizes", "simulated_client_address",
    "simulated_client_key",
]

DEVELOPMENT_DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # Ape's first test account (test mnemonic)
VOTING_DEPLOY_NONCE = 3  # ProtocolChain.deploy: TestToken (0), StakeRegistry (1), ProposalPool (2), VotingRound (3)
BPS = 10_000  # the contract's fixed-point unit for the proposer fraction
ZERO32 = bytes(32)


def simulated_client_key(index: int) -> bytes:
    """The private key of simulated client ``index`` (the same in every run and every process)."""
    return keccak(b"stakefl simulated client %d" % index)


def simulated_client_address(index: int) -> str:
    return Account.from_key(simulated_client_key(index)).address


def create_address(deployer: str, nonce: int) -> str:
    """The address of the contract ``deployer`` creates with ``nonce``: keccak256(rlp([deployer, nonce]))[12:]."""
    if not 0 <= nonce < 0x80:  # the one-byte RLP cases are all a fresh chain needs
        raise ValueError(f"nonce must be in [0, 128), got {nonce}")
    sender = to_canonical_address(deployer)
    nonce_rlp = b"\x80" if nonce == 0 else bytes([nonce])
    payload = bytes([0x80 + len(sender)]) + sender + nonce_rlp
    return to_checksum_address(keccak(bytes([0xC0 + len(payload)]) + payload)[12:])


def development_voting_address() -> str:
    return create_address(DEVELOPMENT_DEPLOYER, VOTING_DEPLOY_NONCE)


def initial_seed(voting: str, initial_model_hash: bytes) -> bytes:
    return keccak(encode(["address", "bytes32"], [voting, initial_model_hash]))


def round_seed(previous_seed: bytes, previous_salt_mix: bytes, round_id: int, voting: str) -> bytes:
    return keccak(encode(["bytes32", "bytes32", "uint256", "address"], [previous_seed, previous_salt_mix, round_id, voting]))


def salt_share(voter: str, salt: bytes) -> bytes:
    return keccak(encode(["address", "bytes32"], [voter, salt]))


def selection_sizes(active: int, params: ProtocolParams) -> tuple[int, int]:
    """(proposers, voters) drawn from ``active`` >= 2 clients, as RoundMath.selectionSizes."""
    if active < 2:
        raise ValueError(f"a round needs at least 2 active clients, got {active}")
    k = max(1, active * round(params.proposer_fraction * BPS) // BPS)
    k = min(k, params.max_proposers, active - 1)
    return k, min(active - k, params.max_voters)


def draw(seed: bytes, active: Sequence[str], count: int) -> list[str]:
    """The first ``count`` picks of the contract's partial Fisher-Yates shuffle of ``active``."""
    clients, n = list(active), len(active)
    if not 0 <= count <= n:
        raise ValueError(f"cannot draw {count} of {n} clients")
    for i in range(count):
        j = i + int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % (n - i)
        clients[i], clients[j] = clients[j], clients[i]
    return clients[:count]


class ContractDraw:
    """Round after round, the proposers and voters VotingRound would draw from ``active`` when no
    one is removed and every drawn voter reveals with the next salt of ``salts`` (the round loop's
    stream: one ``getrandbits(256)`` per voter, in draw order)."""

    def __init__(self, active: Sequence[str], initial_model_hash: bytes, salts: random.Random,
                 params: ProtocolParams = ProtocolParams(), voting: str | None = None):
        self.active = list(active)
        self.params = params
        self.voting = voting or development_voting_address()
        self.salts = salts
        self.round_id = 0
        self._seed = initial_seed(self.voting, initial_model_hash)
        self._salt_mix = ZERO32

    def next_round(self) -> tuple[list[str], list[str]]:
        self.round_id += 1
        self._seed = round_seed(self._seed, self._salt_mix, self.round_id, self.voting)
        k, v = selection_sizes(len(self.active), self.params)
        picks = draw(self._seed, self.active, k + v)
        proposers, voters = picks[:k], picks[k:]
        mix = 0
        for voter in voters:
            mix ^= int.from_bytes(salt_share(voter, self.salts.getrandbits(256).to_bytes(32, "big")), "big")
        self._salt_mix = mix.to_bytes(32, "big")
        return proposers, voters
