// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title RoundMath
/// @notice The pure arithmetic of a round: how many proposers and voters to draw, which index
/// the partial Fisher-Yates shuffle picks next, and the reward shares at settlement.
library RoundMath {
    /// @dev Basis points in one whole.
    uint256 internal constant BPS = 10_000;

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

    /// @notice Reward each of `proposed` proposers gets: min(proposerReward * proposed, poolBalance) / proposed.
    function proposerShare(uint256 proposerReward, uint256 proposed, uint256 poolBalance)
        internal
        pure
        returns (uint256)
    {
        if (proposed == 0) return 0;
        uint256 total = proposerReward * proposed;
        if (total > poolBalance) total = poolBalance;
        return total / proposed;
    }

    /// @notice Reward each of `winners` voters gets from the `losers`' slashed `voterStake`s (rounded down).
    function voterShare(uint256 losers, uint256 voterStake, uint256 winners) internal pure returns (uint256) {
        if (winners == 0) return 0;
        return (losers * voterStake) / winners;
    }
}
