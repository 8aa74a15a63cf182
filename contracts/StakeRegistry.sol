// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";

/// @title StakeRegistry
/// @notice Holds every client's stake. Clients deposit and withdraw free stake; the bound
/// VotingRound locks, unlocks, slashes, rewards and removes. Slashed stake stays in this
/// contract as "unassigned" tokens (balance beyond `totalStaked`) until it is paid out as a
/// reward or swept to the ProposalPool.
contract StakeRegistry is IStakeRegistry, Ownable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @dev One client's balances, packed in one slot (lock/unlock touch a single slot).
    struct Account {
        uint128 stake; //  whole stake, locked part included
        uint128 locked; // part locked in the live round
    }

    /// @dev One client's membership, packed in one slot.
    struct Membership {
        uint64 indexPlusOne; // position in `_active` + 1; 0 = not in the active set
        bool registered; //     deposited at least once
        bool removed; //        removed for good
    }

    // ---------------------------------------------------------------- state
    IERC20 private immutable _token;
    address private _votingRound;
    address private _proposalPool;
    uint256 private _totalStaked;
    address[] private _active;
    mapping(address client => Account) private _accounts;
    mapping(address client => Membership) private _members;

    /// @param token_ The staked ERC-20 token.
    constructor(address token_) Ownable(msg.sender) {
        if (token_ == address(0)) revert StakeZeroAddress();
        _token = IERC20(token_);
    }

    // ---------------------------------------------------------------- modifiers
    modifier onlyVotingRound() {
        if (msg.sender != _votingRound) revert StakeUnauthorized(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- client actions
    /// @inheritdoc IStakeRegistry
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert StakeZeroAmount();
        Membership storage m = _members[msg.sender];
        if (m.removed) revert StakeClientRemoved(msg.sender);
        if (!m.registered) {
            m.registered = true;
            _active.push(msg.sender);
            m.indexPlusOne = uint64(_active.length);
            emit ClientRegistered(msg.sender);
        }
        Account storage a = _accounts[msg.sender];
        uint256 newStake = uint256(a.stake) + amount;
        a.stake = SafeCast.toUint128(newStake);
        _totalStaked += amount;
        emit Deposited(msg.sender, amount, newStake);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IStakeRegistry
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert StakeZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint256 free = uint256(a.stake) - a.locked;
        if (amount > free) revert StakeInsufficientFree(msg.sender, free, amount);
        uint256 newStake = uint256(a.stake) - amount;
        a.stake = uint128(newStake);
        _totalStaked -= amount;
        emit Withdrawn(msg.sender, amount, newStake);
        _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- owner
    /// @inheritdoc IStakeRegistry
    function bind(address votingRound_, address proposalPool_) external onlyOwner {
        if (_votingRound != address(0)) revert StakeAlreadyBound(_votingRound);
        if (votingRound_ == address(0) || proposalPool_ == address(0)) revert StakeZeroAddress();
        _votingRound = votingRound_;
        _proposalPool = proposalPool_;
        emit RegistryBound(votingRound_, proposalPool_);
    }

    // ---------------------------------------------------------------- VotingRound only
    /// @inheritdoc IStakeRegistry
    function lock(address client, uint256 amount) external onlyVotingRound {
        if (_members[client].indexPlusOne == 0) revert StakeNotActive(client);
        Account storage a = _accounts[client];
        uint256 free = uint256(a.stake) - a.locked;
        if (amount > free) revert StakeInsufficientFree(client, free, amount);
        a.locked += uint128(amount); // amount <= free < 2**128
        emit StakeLocked(client, amount);
    }

    /// @inheritdoc IStakeRegistry
    function unlock(address client, uint256 amount) external onlyVotingRound {
        Account storage a = _accounts[client];
        if (amount > a.locked) revert StakeInsufficientLocked(client, a.locked, amount);
        a.locked -= uint128(amount);
        emit StakeUnlocked(client, amount);
    }

    /// @inheritdoc IStakeRegistry
    function slash(address client, uint256 amount) external onlyVotingRound {
        Account storage a = _accounts[client];
        if (amount > a.locked) revert StakeInsufficientLocked(client, a.locked, amount);
        a.locked -= uint128(amount);
        a.stake -= uint128(amount);
        _totalStaked -= amount;
        emit StakeSlashed(client, amount);
    }

    /// @inheritdoc IStakeRegistry
    function reward(address client, uint256 amount) external onlyVotingRound {
        uint256 available = _unassigned();
        if (amount > available) revert StakeInsufficientUnassigned(available, amount);
        Account storage a = _accounts[client];
        a.stake = SafeCast.toUint128(uint256(a.stake) + amount);
        _totalStaked += amount;
        emit StakeRewarded(client, amount);
    }

    /// @inheritdoc IStakeRegistry
    function remove(address client) external onlyVotingRound {
        Membership storage m = _members[client];
        if (m.removed) revert StakeClientRemoved(client);
        uint256 indexPlusOne = m.indexPlusOne;
        if (indexPlusOne == 0) revert StakeNotActive(client);
        // swap-and-pop: move the last active client into the freed slot
        uint256 lastIndex = _active.length - 1;
        if (indexPlusOne - 1 != lastIndex) {
            address last = _active[lastIndex];
            _active[indexPlusOne - 1] = last;
            _members[last].indexPlusOne = uint64(indexPlusOne);
        }
        _active.pop();
        m.indexPlusOne = 0;
        m.removed = true;
        emit ClientRemoved(client, _accounts[client].stake);
    }

    /// @inheritdoc IStakeRegistry
    function sweepUnassigned() external onlyVotingRound returns (uint256 amount) {
        amount = _unassigned();
        if (amount > 0) {
            address pool = _proposalPool;
            emit UnassignedSwept(pool, amount);
            _token.safeTransfer(pool, amount);
        }
    }

    // ---------------------------------------------------------------- views
    /// @inheritdoc IStakeRegistry
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IStakeRegistry
    function votingRound() external view returns (address) {
        return _votingRound;
    }

    /// @inheritdoc IStakeRegistry
    function proposalPool() external view returns (address) {
        return _proposalPool;
    }

    /// @inheritdoc IStakeRegistry
    function stakeOf(address client) external view returns (uint256) {
        return _accounts[client].stake;
    }

    /// @inheritdoc IStakeRegistry
    function lockedOf(address client) external view returns (uint256) {
        return _accounts[client].locked;
    }

    /// @inheritdoc IStakeRegistry
    function freeStakeOf(address client) external view returns (uint256) {
        Account storage a = _accounts[client];
        return uint256(a.stake) - a.locked;
    }

    /// @inheritdoc IStakeRegistry
    function isActive(address client) external view returns (bool) {
        return _members[client].indexPlusOne != 0;
    }

    /// @inheritdoc IStakeRegistry
    function isRemoved(address client) external view returns (bool) {
        return _members[client].removed;
    }

    /// @inheritdoc IStakeRegistry
    function activeCount() external view returns (uint256) {
        return _active.length;
    }

    /// @inheritdoc IStakeRegistry
    function activeClientAt(uint256 index) external view returns (address) {
        return _active[index];
    }

    /// @inheritdoc IStakeRegistry
    function activeClients() external view returns (address[] memory) {
        return _active;
    }

    /// @inheritdoc IStakeRegistry
    function totalStaked() external view returns (uint256) {
        return _totalStaked;
    }

    /// @inheritdoc IStakeRegistry
    function unassigned() external view returns (uint256) {
        return _unassigned();
    }

    // ---------------------------------------------------------------- internal
    /// @dev Tokens held beyond the clients' stakes (never negative: stakes are always backed).
    function _unassigned() private view returns (uint256) {
        return _token.balanceOf(address(this)) - _totalStaked;
    }
}
