// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IProposalPool} from "./interfaces/IProposalPool.sol";

/// @title ProposalPool
/// @notice Holds the stakes slashed from proposers (swept from the StakeRegistry) and any
/// donations; the bound VotingRound releases proposer rewards from it into the registry.
contract ProposalPool is IProposalPool, Ownable {
    using SafeERC20 for IERC20;

    // ---------------------------------------------------------------- state
    IERC20 private immutable _token;
    address private immutable _registry;
    address private _votingRound;

    /// @param token_ The ERC-20 token (the staked token).
    /// @param registry_ The StakeRegistry rewards are paid into.
    constructor(address token_, address registry_) Ownable(msg.sender) {
        if (token_ == address(0) || registry_ == address(0)) revert PoolZeroAddress();
        _token = IERC20(token_);
        _registry = registry_;
    }

    // ---------------------------------------------------------------- owner
    /// @inheritdoc IProposalPool
    function bind(address votingRound_) external onlyOwner {
        if (_votingRound != address(0)) revert PoolAlreadyBound(_votingRound);
        if (votingRound_ == address(0)) revert PoolZeroAddress();
        _votingRound = votingRound_;
        emit PoolBound(votingRound_);
    }

    // ---------------------------------------------------------------- VotingRound only
    /// @inheritdoc IProposalPool
    function release(uint256 amount) external {
        if (msg.sender != _votingRound) revert PoolUnauthorized(msg.sender);
        uint256 held = _token.balanceOf(address(this));
        if (amount > held) revert PoolInsufficientBalance(held, amount);
        emit RewardReleased(amount);
        _token.safeTransfer(_registry, amount);
    }

    // ---------------------------------------------------------------- views
    /// @inheritdoc IProposalPool
    function balance() external view returns (uint256) {
        return _token.balanceOf(address(this));
    }

    /// @inheritdoc IProposalPool
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IProposalPool
    function registry() external view returns (address) {
        return _registry;
    }

    /// @inheritdoc IProposalPool
    function votingRound() external view returns (address) {
        return _votingRound;
    }
}
