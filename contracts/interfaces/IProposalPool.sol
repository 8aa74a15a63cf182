// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IProposalPool
/// @notice Holds tokens slashed from proposers (and swept dust); pays proposers of accepted rounds.
/// Anyone may fund it with a plain ERC-20 transfer.
interface IProposalPool {
    /// @notice The pool was wired to its VotingRound (once).
    event PoolBound(address indexed votingRound);
    /// @notice `amount` tokens were paid into the StakeRegistry for proposer rewards.
    event RewardReleased(uint256 amount);

    /// @notice The caller is not the bound VotingRound.
    error PoolUnauthorized(address caller);
    /// @notice `bind` was already called.
    error PoolAlreadyBound(address votingRound);
    /// @notice A zero address was given where a contract is required.
    error PoolZeroAddress();
    /// @notice A release larger than the pool's balance.
    error PoolInsufficientBalance(uint256 balance, uint256 requested);

    /// @notice Wire the pool to its VotingRound. Owner only, once.
    function bind(address votingRound) external;

    /// @notice Transfer `amount` tokens to the StakeRegistry (as unassigned tokens). VotingRound only.
    function release(uint256 amount) external;

    /// @notice Tokens the pool holds.
    function balance() external view returns (uint256);
    /// @notice The pool's ERC-20 token.
    function token() external view returns (address);
    /// @notice The StakeRegistry rewards are paid into.
    function registry() external view returns (address);
    /// @notice The bound VotingRound (zero before `bind`).
    function votingRound() external view returns (address);
}
