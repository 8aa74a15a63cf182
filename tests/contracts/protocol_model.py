"""The protocol as plain Python: Solidity enums mirrored as IntEnum, default parameters, the
commitment hash, the seed and the draw, and the per-proposal settlement rule (SPEC.md), used by the
unit tests and the state machine. `paper_settle_outcome` is the paper's Algorithm 2 (the rule before
ballots) that a uniform ballot must reproduce."""
from dataclasses import dataclass, field
from enum import IntEnum

from eth_abi import encode
from eth_utils import keccak

TOKEN = 10**18
INITIAL_MODEL = b"\x01" * 32
ZERO32 = b"\x00" * 32


class RoundState(IntEnum):
    NONE = 0
    PROPOSING = 1
    COMMITTING = 2
    REVEALING = 3
    SETTLEABLE = 4
    SETTLED = 5

    # CamelCase aliases read like the Solidity names
    None_ = 0
    Proposing = 1
    Committing = 2
    Revealing = 3
    Settleable = 4
    Settled = 5


class Role(IntEnum):
    NONE = 0
    PROPOSER = 1
    VOTER = 2
    Proposer = 1
    Voter = 2


class Decision(IntEnum):
    NONE = 0
    ACCEPTED = 1
    REJECTED = 2
    Accepted = 1
    Rejected = 2


DEFAULT_PARAMS = dict(
    proposerFractionBps=2000,
    maxProposers=50,
    maxVoters=150,
    proposerStake=8 * TOKEN,
    voterStake=4 * TOKEN,
    proposerReward=2 * TOKEN,
    proposalPeriod=120,
    commitPeriod=120,
    revealPeriod=120,
    seedBlockDelay=0,  # 0: no block hash in the seed (today's simulations); SPEC.md "Randomness"
)
MAX_SEED_BLOCK_DELAY = 128
BLOCKHASH_WINDOW = 256  # blockhash() reads only the 256 most recent blocks


def accept_all(proposals):
    """The ballot accepting every one of `proposals` proposals (the paper's Accept)."""
    return (1 << proposals) - 1


def update_of(proposer):
    """The update hash `proposer` publishes in the unit tests (distinct per proposer)."""
    return keccak(bytes.fromhex(proposer[2:]))


def commitment_of(round_id, voter, accept_mask, parent_hash, salt):
    """keccak256(abi.encode(roundId, voter, acceptMask, parentHash, salt)), as VotingRound.commitmentFor."""
    return keccak(
        encode(
            ["uint256", "address", "uint256", "bytes32", "bytes32"],
            [round_id, voter, accept_mask, parent_hash, salt],
        )
    )


# ---------------------------------------------------------------- the seed and the draw
def initial_seed(voting, initial_model=INITIAL_MODEL):
    """seed_0 = keccak256(abi.encode(address(this), initialModelHash))."""
    return keccak(encode(["address", "bytes32"], [voting, initial_model]))


def round_seed(previous_seed, previous_salt_mix, round_id, voting):
    """seed_r = keccak256(abi.encode(seed_{r-1}, saltMix_{r-1}, r, address(this)))."""
    return keccak(encode(["bytes32", "bytes32", "uint256", "address"],
                         [previous_seed, previous_salt_mix, round_id, voting]))


def anchored_seed(seed, block_hash):
    """With seedBlockDelay > 0: keccak256(abi.encode(roundSeed(...), blockhash(seedBlock)))."""
    return keccak(encode(["bytes32", "bytes32"], [seed, block_hash]))


def seed_block_status(seed_block, block_number):
    """What openRound does in block `block_number` with the next seed block `seed_block`:
    "not-reached" (reverts, wait), "expired" (reverts, re-anchor first) or "readable"."""
    if block_number <= seed_block:
        return "not-reached"
    if block_number > seed_block + BLOCKHASH_WINDOW:
        return "expired"
    return "readable"


def draw_size(snapshot, active):
    """Positions of the active list a round draws from: the active count right after the previous
    opening, or the count now for round 1 (snapshot 0) and when that snapshot is below 2."""
    return active if snapshot < 2 or snapshot > active else snapshot


def salt_share(voter, salt):
    """What a reveal XORs into the round's salt mix: keccak256(abi.encode(voter, salt))."""
    return keccak(encode(["address", "bytes32"], [voter, salt]))


def xor32(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def selection_sizes(n, p=DEFAULT_PARAMS):
    """(proposers, voters) drawn from n >= 2 active clients."""
    k = max(1, n * p["proposerFractionBps"] // 10_000)
    k = min(k, p["maxProposers"], n - 1)
    return k, min(n - k, p["maxVoters"])


def draw_index(seed, i, n):
    return i + int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % (n - i)


def fisher_yates_draw(seed, active, k, v):
    """The reference draw: a partial Fisher-Yates shuffle of a full copy of the active list (the
    algorithm of the contract before the sparse draw). Returns (proposers, voters) in draw order."""
    clients, n, picks = list(active), len(active), []
    for i in range(k + v):
        j = draw_index(seed, i, n)
        clients[i], clients[j] = clients[j], clients[i]
        picks.append(clients[i])
    return picks[:k], picks[k:]


def apply_draw(seed, active, free, p=DEFAULT_PARAMS, n=None):
    """openRound on an active list: returns (proposers, voters, removed, active after), where
    `free[a]` is a's free stake, `removed` lists (client, role, free, required) in draw order and
    removals swap-and-pop the active list as StakeRegistry.remove does, after the draw. The draw
    is over the first `n` positions (default: all; see `draw_size`)."""
    n = len(active) if n is None else n
    k, v = selection_sizes(n, p)
    drawn_p, drawn_v = fisher_yates_draw(seed, active[:n], k, v)
    proposers, voters, removed, after = [], [], [], list(active)
    for a, role in [(a, Role.PROPOSER) for a in drawn_p] + [(a, Role.VOTER) for a in drawn_v]:
        required = p["proposerStake"] if role == Role.PROPOSER else p["voterStake"]
        if free[a] < required:
            i = after.index(a)
            after[i] = after[-1]
            after.pop()
            removed.append((a, role, free[a], required))
        else:
            (proposers if role == Role.PROPOSER else voters).append(a)
    return proposers, voters, removed, after


# ---------------------------------------------------------------- settlement
def is_majority(votes, revealed):
    """The tie rule: a strict majority of the revealed votes (a tie or no reveal is none)."""
    return 2 * votes > revealed


@dataclass
class Outcome:
    """What settlement does, in token units. `slashed`/`rewarded` hold every participant (0 included)."""

    decision: Decision
    model: bytes  # the global model hash recorded
    confirmed: bool  # a majority confirmed `leading_parent`
    leading_parent: bytes
    leading_votes: int
    accepts: list  # per proposal
    accepted_mask: int
    slashed: dict
    rewarded: dict
    won: dict
    pool_release: int
    swept: int
    shares: list = field(default_factory=list)  # per proposal: floor(L_i * S / W_i)

    @property
    def accepted_count(self):
        return bin(self.accepted_mask).count("1")


def tally(reveals, proposals):
    """(accepts per proposal, leading parent hash, its votes) from reveals {voter: (mask, parent)}
    in reveal order; the first parent hash to reach a count keeps the lead."""
    accepts = [sum((mask >> i) & 1 for mask, _ in reveals.values()) for i in range(proposals)]
    votes, leading, leading_votes = {}, ZERO32, 0
    for _, parent in reveals.values():
        votes[parent] = votes.get(parent, 0) + 1
        if votes[parent] > leading_votes:
            leading, leading_votes = parent, votes[parent]
    return accepts, leading, leading_votes


def settle_outcome(p, proposers, voters, submitted, reveals, pool_balance, global_model):
    """The settlement rule of SPEC.md.

    proposers, voters: addresses drawn (draw order); submitted: proposers that proposed, in
    submission order (proposal i = submitted[i]); reveals: {voter: (acceptMask, parentHash)} in
    reveal order; pool_balance: before settling; global_model: the hash recorded before.
    """
    S, P, R, V = p["voterStake"], len(submitted), len(reveals), len(voters)
    accepts, leading, leading_votes = tally(reveals, P)
    accepted_mask = sum(1 << i for i in range(P) if is_majority(accepts[i], R))
    accepted_count = bin(accepted_mask).count("1")
    confirmed = is_majority(leading_votes, R)
    slashed, rewarded, won = {}, {}, {}

    share = 0
    if accepted_count:
        share = min(p["proposerReward"] * accepted_count, pool_balance) // accepted_count
    for a in proposers:
        ok = a in submitted and (accepted_mask >> submitted.index(a)) & 1 == 1
        slashed[a], rewarded[a], won[a] = (0, share, True) if ok else (p["proposerStake"], 0, False)

    # voters: per proposal; without proposals, one virtual proposal nobody accepts
    judged = accepts if P else [0]
    winners = [judged[i] if (accepted_mask >> i) & 1 else R - judged[i] for i in range(len(judged))]
    shares = [(V - w) * S // w if w else 0 for w in winners]
    for v in voters:
        if v not in reveals:
            slashed[v], rewarded[v] = S, 0
        else:
            mask = reveals[v][0]
            agree = [i for i in range(len(judged)) if (mask >> i) & 1 == (accepted_mask >> i) & 1]
            mistakes = len(judged) - len(agree)
            slashed[v] = -(-S * mistakes // len(judged))
            rewarded[v] = sum(shares[i] for i in agree) // len(judged)
        won[v] = slashed[v] == 0
    release = share * accepted_count
    swept = sum(slashed.values()) + release - sum(rewarded.values())
    return Outcome(
        decision=Decision.ACCEPTED if accepted_count else Decision.REJECTED,
        model=leading if confirmed else global_model,
        confirmed=confirmed, leading_parent=leading, leading_votes=leading_votes,
        accepts=accepts, accepted_mask=accepted_mask, slashed=slashed, rewarded=rewarded, won=won,
        pool_release=release, swept=swept, shares=shares if P else [],
    )


def paper_settle_outcome(p, proposers, voters, proposed, votes, pool_balance):
    """The paper's Algorithm 2 (this contract's rule before ballots): the round's aggregate is
    accepted iff a strict majority of the revealed votes accepts it; then every proposer that
    proposed gets its stake back and min(reward * P, pool) / P, the others lose their stake;
    voters on the decision's side win floor(L * S / W), the rest (other side, unrevealed) lose S.

    votes: {voter: True (accept) / False (reject)} for the voters that revealed.
    Returns (accepted, slashed, rewarded, pool_release) with every participant in the dicts."""
    accepted = is_majority(sum(votes.values()), len(votes))
    slashed, rewarded = {}, {}
    n = len(proposed)
    per = min(p["proposerReward"] * n, pool_balance) // n if accepted and n else 0
    for a in proposers:
        ok = accepted and a in proposed
        slashed[a], rewarded[a] = (0, per) if ok else (p["proposerStake"], 0)
    winners = [v for v in voters if v in votes and votes[v] == accepted]
    share = (len(voters) - len(winners)) * p["voterStake"] // len(winners) if winners else 0
    for v in voters:
        slashed[v], rewarded[v] = (0, share) if v in winners else (p["voterStake"], 0)
    return accepted, slashed, rewarded, per * n
