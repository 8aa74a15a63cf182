// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {RoundMath} from "../libraries/RoundMath.sol";

/// @title RoundMathHarness
/// @notice Tests only: exposes the internal functions of RoundMath so the tests can compare them
/// with the Python model.
contract RoundMathHarness {
    function roundSeed(bytes32 previousSeed, bytes32 previousSaltMix, uint256 roundId, address round)
        external
        pure
        returns (bytes32)
    {
        return RoundMath.roundSeed(previousSeed, previousSaltMix, roundId, round);
    }

    function anchoredSeed(bytes32 seed, bytes32 blockHash) external pure returns (bytes32) {
        return RoundMath.anchoredSeed(seed, blockHash);
    }

    function drawSize(uint256 snapshot, uint256 active) external pure returns (uint256) {
        return RoundMath.drawSize(snapshot, active);
    }

    function spreadLanes(uint256 bits) external pure returns (uint256) {
        return RoundMath.spreadLanes(bits);
    }

    function laneOf(uint256 word, uint256 lane) external pure returns (uint256) {
        return RoundMath.laneOf(word, lane);
    }

    function isMajority(uint256 votes, uint256 revealed) external pure returns (bool) {
        return RoundMath.isMajority(votes, revealed);
    }

    function decide(uint256[] memory accepts, uint256 revealed) external pure returns (uint256, uint256) {
        return RoundMath.decide(accepts, revealed);
    }

    function proposalShares(
        uint256[] memory accepts,
        uint256 acceptedMask,
        uint256 revealed,
        uint256 voters,
        uint256 voterStake
    ) external pure returns (uint256[] memory) {
        return RoundMath.proposalShares(accepts, acceptedMask, revealed, voters, voterStake);
    }

    function voterOutcome(
        bool revealed,
        uint256 ballot,
        uint256 acceptedMask,
        uint256[] memory shares,
        uint256 voterStake
    ) external pure returns (uint256, uint256, bool) {
        return RoundMath.voterOutcome(revealed, ballot, acceptedMask, shares, voterStake);
    }

    function ceilDiv(uint256 a, uint256 b) external pure returns (uint256) {
        return RoundMath.ceilDiv(a, b);
    }
}
