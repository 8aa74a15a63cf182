// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title RoundMath
/// @notice The pure arithmetic of a round: the seed, how many proposers and voters to draw, which
/// index the partial Fisher-Yates shuffle picks next, the packed per-proposal tally, the majority
/// (tie) rule, and the per-proposal settlement of proposers and voters (SPEC.md, "Settlement").
library RoundMath {
    /// @dev Basis points in one whole.
    uint256 internal constant BPS = 10_000;
    /// @dev A ballot is a uint256 bitmask: at most 256 proposals per round.
    uint256 internal constant MAX_PROPOSALS = 256;
    /// @dev The tally packs one 16-bit accept counter per proposal, 16 counters per word
    /// (a count never exceeds maxVoters, a uint16).
    uint256 internal constant LANES_PER_WORD = 16;
    uint256 internal constant LANE_BITS = 16;
    uint256 internal constant LANE_MASK = 0xFFFF;

    // ---------------------------------------------------------------- the seed and the draw
    /// @notice seed_0 = keccak256(abi.encode(round, initialModelHash)): the seed before round 1.
    function initialSeed(address round, bytes32 initialModelHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(round, initialModelHash));
    }

    /// @notice seed_r = keccak256(abi.encode(seed_{r-1}, saltMix_{r-1}, r, round)): no block data,
    /// so the seed is fixed once round r-1's reveals are in, whenever round r opens.
    function roundSeed(bytes32 previousSeed, bytes32 previousSaltMix, uint256 roundId, address round)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(previousSeed, previousSaltMix, roundId, round));
    }

    /// @notice With `seedBlockDelay > 0`, the seed a round draws with: keccak256(abi.encode(seed,
    /// blockHash)), where `seed` is `roundSeed(...)` and `blockHash` the hash of the round's seed block,
    /// a block mined after the previous round settled.
    function anchoredSeed(bytes32 seed, bytes32 blockHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(seed, blockHash));
    }

    /// @notice Positions [0, size) of the active list a round draws from: the `snapshot` of the
    /// active count taken at the previous opening (after its removals), unless it is below 2 (round 1,
    /// or a protocol that ran dry), then the `active` count now. Never more than `active`.
    function drawSize(uint256 snapshot, uint256 active) internal pure returns (uint256) {
        if (snapshot < 2 || snapshot > active) return active;
        return snapshot;
    }

    /// @notice What a revealed salt XORs into its round's salt mix: keccak256(abi.encode(voter, salt)).
    /// @dev The voter's address is inside, so two voters revealing the same salt do not cancel out.
    function saltShare(address voter, bytes32 salt) internal pure returns (bytes32) {
        return keccak256(abi.encode(voter, salt));
    }

    /// @notice Proposers `k` and voters `v` drawn from `n >= 2` active clients.
    /// @dev k = max(1, n * bps / 10000), then min(k, maxProposers, n - 1); v = min(n - k, maxVoters).
    function selectionSizes(uint256 n, uint256 proposerFractionBps, uint256 maxProposers, uint256 maxVoters)
        internal
        pure
        returns (uint256 k, uint256 v)
    {
        k = (n * proposerFractionBps) / BPS;
        if (k == 0) k = 1;
        if (k > maxProposers) k = maxProposers;
        if (k > n - 1) k = n - 1;
        v = n - k;
        if (v > maxVoters) v = maxVoters;
    }

    /// @notice Index (in [i, n)) the shuffle swaps into position `i`.
    /// @dev j = i + uint256(keccak256(abi.encode(seed, i))) % (n - i).
    function drawIndex(bytes32 seed, uint256 i, uint256 n) internal pure returns (uint256) {
        return i + (uint256(keccak256(abi.encode(seed, i))) % (n - i));
    }

    // ---------------------------------------------------------------- the tally
    /// @notice The increment of a packed tally word for 16 ballot bits: bit l of `bits` becomes a 1
    /// in lane l (bit 16 * l of the result).
    function spreadLanes(uint256 bits) internal pure returns (uint256 word) {
        for (uint256 lane = 0; lane < LANES_PER_WORD; ++lane) {
            if ((bits >> lane) & 1 != 0) word |= 1 << (lane * LANE_BITS);
        }
    }

    /// @notice The counter in `lane` of a packed tally word.
    function laneOf(uint256 word, uint256 lane) internal pure returns (uint256) {
        return (word >> (lane * LANE_BITS)) & LANE_MASK;
    }

    /// @notice The majority (tie) rule: `votes` of `revealed` decide iff 2 * votes > revealed.
    /// A tie, or no reveal at all, is no majority.
    function isMajority(uint256 votes, uint256 revealed) internal pure returns (bool) {
        return 2 * votes > revealed;
    }

    /// @notice Per-proposal decisions: bit i of `acceptedMask` set iff `accepts[i]` is a majority of `revealed`.
    function decide(uint256[] memory accepts, uint256 revealed)
        internal
        pure
        returns (uint256 acceptedMask, uint256 acceptedCount)
    {
        for (uint256 i = 0; i < accepts.length; ++i) {
            if (isMajority(accepts[i], revealed)) {
                acceptedMask |= 1 << i;
                ++acceptedCount;
            }
        }
    }

    // ---------------------------------------------------------------- settlement
    /// @notice Reward each of `accepted` proposers gets: min(proposerReward * accepted, poolBalance) / accepted.
    function proposerShare(uint256 proposerReward, uint256 accepted, uint256 poolBalance)
        internal
        pure
        returns (uint256)
    {
        if (accepted == 0) return 0;
        uint256 total = proposerReward * accepted;
        if (total > poolBalance) total = poolBalance;
        return total / accepted;
    }

    /// @notice One proposal's share for each of its `winners` voters: floor(losers * voterStake / winners).
    function voterShare(uint256 losers, uint256 voterStake, uint256 winners) internal pure returns (uint256) {
        if (winners == 0) return 0;
        return (losers * voterStake) / winners;
    }

    /// @notice shares[i] = voterShare(L_i, voterStake, W_i) for each proposal: W_i revealed voters on
    /// the winning side of proposal i (accepts[i] if accepted, revealed - accepts[i] if rejected),
    /// L_i = voters - W_i (the other side, and every voter that did not reveal).
    function proposalShares(
        uint256[] memory accepts,
        uint256 acceptedMask,
        uint256 revealed,
        uint256 voters,
        uint256 voterStake
    ) internal pure returns (uint256[] memory shares) {
        shares = new uint256[](accepts.length);
        for (uint256 i = 0; i < accepts.length; ++i) {
            uint256 winners = (acceptedMask >> i) & 1 != 0 ? accepts[i] : revealed - accepts[i];
            shares[i] = voterShare(voters - winners, voterStake, winners);
        }
    }

    /// @notice One voter's (slash, reward) over the round's P = shares.length proposals: with m the
    /// proposals on which its ballot differs from `acceptedMask` (m = P if it did not reveal),
    /// slash = ceil(voterStake * m / P) and reward = floor(sum of shares[i] it won / P);
    /// `won` = (m == 0), i.e. slash == 0.
    /// A uniform ballot gives the paper's rule: (voterStake, 0) or (0, shares[0]). Needs P >= 1
    /// (a round without proposals is settled on one virtual proposal nobody accepts).
    function voterOutcome(
        bool revealed,
        uint256 ballot,
        uint256 acceptedMask,
        uint256[] memory shares,
        uint256 voterStake
    ) internal pure returns (uint256 slash, uint256 reward, bool won) {
        uint256 proposals = shares.length;
        if (!revealed) return (voterStake, 0, false);
        uint256 mistakes = 0;
        uint256 wonShares = 0;
        uint256 disagree = ballot ^ acceptedMask;
        for (uint256 i = 0; i < proposals; ++i) {
            if ((disagree >> i) & 1 != 0) ++mistakes;
            else wonShares += shares[i];
        }
        slash = ceilDiv(voterStake * mistakes, proposals);
        reward = wonShares / proposals;
        won = mistakes == 0;
    }

    /// @notice ceil(a / b) for b > 0.
    function ceilDiv(uint256 a, uint256 b) internal pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }
}
