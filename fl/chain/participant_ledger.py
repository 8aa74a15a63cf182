"""The participant's ledger: what one client of `ape run client` reads and sends, as plain Python views."""

from __future__ import annotations

from dataclasses import dataclass

from ape import chain
from ape.api import AccountAPI
from ape.exceptions import TransactionNotFoundError

from fl.chain.connection import head_block_number
from fl.chain.errors import await_unmined
from fl.chain.sending import automines, transact
from fl.chain.ledger import ProtocolChain
from fl.protocol.votes import Decision, Proposal, Role

@dataclass
class RoundView:
    """The on-chain record of one round, in plain Python types."""

    round_id: int
    proposal_deadline: int
    commit_deadline: int
    reveal_deadline: int
    proposer_count: int
    voter_count: int
    proposal_count: int
    commit_count: int
    reveal_count: int
    settled: bool
    decision: Decision
    global_model_hash: bytes  # recorded at settlement: the parent a voter majority confirmed (lags a round)
    leading_parent_hash: bytes = b"\x00" * 32
    leading_parent_votes: int = 0
    accepted_mask: int = 0  # set at settlement: bit i = proposal i accepted
    accepted_count: int = 0

    @property
    def parent_confirmed(self) -> bool:
        """True if a strict majority of the revealed voters attested the same parent hash (then
        settlement recorded it as `global_model_hash`)."""
        return self.settled and 2 * self.leading_parent_votes > self.reveal_count


@dataclass
class ParticipantView:
    """One client's on-chain record in one round."""

    role: Role
    acted: bool
    revealed: bool
    accept_mask: int = 0  # voter: its revealed ballot


class ParticipantLedger:
    """What one participant (`ape run client`) reads and sends; every transaction from its own account."""

    def __init__(self, protocol: "ProtocolChain", account: AccountAPI):
        self.protocol = protocol
        self.account = account
        self.address = str(account.address)

    # ------------------------------------------------------------ reads
    def current_round_id(self) -> int:
        return int(self.protocol.voting.currentRoundId())

    def round(self, round_id: int) -> RoundView:
        r = self.protocol.voting.getRound(round_id)
        return RoundView(
            round_id=round_id,
            proposal_deadline=int(r.proposalDeadline),
            commit_deadline=int(r.commitDeadline),
            reveal_deadline=int(r.revealDeadline),
            proposer_count=int(r.proposerCount),
            voter_count=int(r.voterCount),
            proposal_count=int(r.proposalCount),
            commit_count=int(r.commitCount),
            reveal_count=int(r.revealCount),
            settled=bool(r.settled),
            decision=Decision(int(r.decision)),
            global_model_hash=bytes(r.globalModelHash),
            leading_parent_hash=bytes(r.leadingParentHash),
            leading_parent_votes=int(r.leadingParentVotes),
            accepted_mask=int(r.acceptedMask),
            accepted_count=int(r.acceptedCount),
        )

    def participant(self, round_id: int, address: str | None = None) -> ParticipantView:
        p = self.protocol.voting.getParticipant(round_id, address or self.address)
        return ParticipantView(role=Role(int(p.role)), acted=bool(p.acted), revealed=bool(p.revealed),
                               accept_mask=int(p.acceptMask))

    def proposals(self, round_id: int) -> list[Proposal]:
        """The round's proposals in submission order (= ballot bit order)."""
        proposers, hashes, counts = self.protocol.voting.proposalsOf(round_id)
        return [Proposal(proposer=str(p), update_hash=bytes(h), sample_count=int(n))
                for p, h, n in zip(proposers, hashes, counts)]

    def proposal_accepts(self, round_id: int) -> list[int]:
        """Revealed accept votes per proposal, in proposal order."""
        return [int(n) for n in self.protocol.voting.proposalAccepts(round_id)]

    def global_model_hash(self) -> bytes:
        return self.protocol.global_model_hash()

    def initial_model_hash(self) -> bytes:
        return bytes(self.protocol.voting.initialModelHash())

    def params(self) -> dict:
        p = self.protocol.voting.params()
        return {
            "proposer_stake": int(p.proposerStake), "voter_stake": int(p.voterStake),
            "proposal_period": int(p.proposalPeriod), "commit_period": int(p.commitPeriod),
            "reveal_period": int(p.revealPeriod), "seed_block_delay": int(p.seedBlockDelay),
        }

    def stake(self, address: str | None = None) -> dict:
        a = address or self.address
        registry = self.protocol.registry
        return {
            "stake": int(registry.stakeOf(a)), "locked": int(registry.lockedOf(a)),
            "active": bool(registry.isActive(a)), "removed": bool(registry.isRemoved(a)),
        }

    def next_seed_block(self) -> int:
        """The block whose hash the next round's seed mixes in (0: none, or the latest round is live)."""
        return int(self.protocol.voting.nextSeedBlock())

    def head_block(self) -> int:
        """The latest block's number (the next transaction runs in the block after it)."""
        return head_block_number()

    def mine_blocks_if_automining(self, blocks: int) -> bool:
        """Mine `blocks` empty blocks on a development chain that mines only on transactions (where a
        seed block would otherwise never come) and return True; elsewhere do nothing and return False."""
        if blocks <= 0 or not automines():
            return False
        chain.provider.mine(blocks)
        return True

    def active_clients(self) -> list[str]:
        return [str(a) for a in self.protocol.registry.activeClients()]

    def token_balance(self, address: str | None = None) -> int:
        return self.protocol.token_balance(address or self.address)

    def settlement_of(self, round_id: int, from_block: int = 0, address: str | None = None,
                      lookback: int = 5_000):
        """(won, slashed, rewarded) of `address` in settled round `round_id`, from its events (or None).
        Searches the last `lookback` blocks only (public RPCs cap log ranges; the client asks right
        after the settlement)."""
        a = (address or self.address).lower()
        head = head_block_number()
        event = self.protocol.voting.ParticipantSettled
        start = max(from_block, head - lookback)
        for log in event.range(start, head + 1, search_topics={"roundId": round_id}):
            if str(log.client).lower() == a:
                return bool(log.won), int(log.slashed), int(log.rewarded)
        return None

    # ------------------------------------------------------------ actions
    def _send(self, method, *args) -> str:
        if not automines():  # a chain that mines on its own clock: wait for blocks, bump fees, never resend
            return str(transact(self.account, method, *args).txn_hash)
        try:
            receipt = method(*args, sender=self.account)
        except TransactionNotFoundError as exc:
            receipt = await_unmined(exc)
        return str(receipt.txn_hash)

    def mint(self, amount: int) -> str:
        return self._send(self.protocol.token.mint, self.address, amount)

    def approve(self, amount: int) -> str:
        return self._send(self.protocol.token.approve, self.protocol.registry.address, amount)

    def deposit(self, amount: int) -> str:
        return self._send(self.protocol.registry.deposit, amount)

    def withdraw(self, amount: int) -> str:
        return self._send(self.protocol.registry.withdraw, amount)

    def open_round(self) -> str:
        return self._send(self.protocol.voting.openRound)

    def reanchor_seed_block(self) -> str:
        return self._send(self.protocol.voting.reanchorSeedBlock)

    def propose(self, round_id: int, update_hash: bytes, sample_count: int) -> str:
        return self._send(self.protocol.voting.propose, round_id, update_hash, sample_count)

    def commit(self, round_id: int, commitment: bytes) -> str:
        return self._send(self.protocol.voting.commitVote, round_id, commitment)

    def reveal(self, round_id: int, accept_mask: int, parent_hash: bytes, salt: bytes) -> str:
        return self._send(self.protocol.voting.revealVote, round_id, accept_mask, parent_hash, salt)

    def settle(self, round_id: int) -> str:
        return self._send(self.protocol.voting.settle, round_id)


def unlock_for_signing(account: AccountAPI) -> None:
    """Let a long-running command sign without a prompt per transaction: a keyfile account
    (`ape accounts import`) is unlocked once, from $APE_ACCOUNTS_<alias>_PASSPHRASE or a prompt."""
    if hasattr(account, "set_autosign") and getattr(account, "locked", False):
        account.set_autosign(True)
