// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IStakeRegistry
/// @notice Holds every client's staked tokens. Clients deposit and withdraw free stake; only
/// the bound VotingRound may lock, unlock, slash, reward and remove.
interface IStakeRegistry {
    // ---------------------------------------------------------------- events
    /// @notice The registry was wired to its VotingRound and ProposalPool (once).
    event RegistryBound(address indexed votingRound, address indexed proposalPool);
    /// @notice `client` staked for the first time and joined the active set.
    event ClientRegistered(address indexed client);
    /// @notice `client` was removed for good (it could not cover a required stake).
    event ClientRemoved(address indexed client, uint256 stake);
    /// @notice `client` added `amount` to its stake, which is now `newStake`.
    event Deposited(address indexed client, uint256 amount, uint256 newStake);
    /// @notice `client` took `amount` of free stake back, leaving `newStake`.
    event Withdrawn(address indexed client, uint256 amount, uint256 newStake);
    /// @notice `amount` of `client`'s stake was locked for a round.
    event StakeLocked(address indexed client, uint256 amount);
    /// @notice `amount` of `client`'s locked stake was released.
    event StakeUnlocked(address indexed client, uint256 amount);
    /// @notice `amount` of `client`'s locked stake was taken; it is unassigned until rewarded or swept.
    event StakeSlashed(address indexed client, uint256 amount);
    /// @notice `client`'s stake grew by `amount`, paid from unassigned tokens.
    event StakeRewarded(address indexed client, uint256 amount);
    /// @notice Unassigned tokens (slashes nobody was paid from, dust, donations) went to the pool.
    event UnassignedSwept(address indexed proposalPool, uint256 amount);

    // ---------------------------------------------------------------- errors
    /// @notice The caller is not the bound VotingRound.
    error StakeUnauthorized(address caller);
    /// @notice `bind` was already called.
    error StakeAlreadyBound(address votingRound);
    /// @notice A zero address was given where a contract is required.
    error StakeZeroAddress();
    /// @notice A deposit or withdrawal of zero tokens.
    error StakeZeroAmount();
    /// @notice `client` was removed and may not stake or act again.
    error StakeClientRemoved(address client);
    /// @notice `client` is not in the active set.
    error StakeNotActive(address client);
    /// @notice `client` asked for more free (unlocked) stake than it has.
    error StakeInsufficientFree(address client, uint256 free, uint256 requested);
    /// @notice More locked stake was to be released or slashed than `client` has locked.
    error StakeInsufficientLocked(address client, uint256 locked, uint256 requested);
    /// @notice A reward larger than the unassigned tokens the registry holds.
    error StakeInsufficientUnassigned(uint256 unassigned, uint256 requested);

    // ---------------------------------------------------------------- client actions
    /// @notice Stake `amount` more tokens (needs an ERC-20 allowance). The first deposit registers the caller.
    function deposit(uint256 amount) external;

    /// @notice Withdraw `amount` of free (unlocked) stake. Removed clients may withdraw what is left.
    function withdraw(uint256 amount) external;

    // ---------------------------------------------------------------- VotingRound only
    /// @notice Wire the registry to its VotingRound and ProposalPool. Owner only, once.
    function bind(address votingRound, address proposalPool) external;

    /// @notice Lock `amount` of `client`'s free stake for the current round.
    function lock(address client, uint256 amount) external;

    /// @notice Release `amount` of `client`'s locked stake.
    function unlock(address client, uint256 amount) external;

    /// @notice Take `amount` of `client`'s locked stake; it becomes unassigned.
    function slash(address client, uint256 amount) external;

    /// @notice Add `amount` of unassigned tokens to `client`'s stake.
    function reward(address client, uint256 amount) external;

    /// @notice Remove `client` from the active set for good.
    function remove(address client) external;

    /// @notice Send every unassigned token to the ProposalPool. Returns the amount sent.
    function sweepUnassigned() external returns (uint256 amount);

    // ---------------------------------------------------------------- views
    /// @notice The staked ERC-20 token.
    function token() external view returns (address);
    /// @notice The bound VotingRound (zero before `bind`).
    function votingRound() external view returns (address);
    /// @notice The bound ProposalPool (zero before `bind`).
    function proposalPool() external view returns (address);
    /// @notice `client`'s whole stake, locked part included.
    function stakeOf(address client) external view returns (uint256);
    /// @notice The part of `client`'s stake locked in the live round.
    function lockedOf(address client) external view returns (uint256);
    /// @notice `stakeOf(client) - lockedOf(client)`.
    function freeStakeOf(address client) external view returns (uint256);
    /// @notice True while `client` is registered and not removed.
    function isActive(address client) external view returns (bool);
    /// @notice True once `client` has been removed.
    function isRemoved(address client) external view returns (bool);
    /// @notice Number of active clients.
    function activeCount() external view returns (uint256);
    /// @notice The active client at `index` (order changes on removal).
    function activeClientAt(uint256 index) external view returns (address);
    /// @notice Every active client.
    function activeClients() external view returns (address[] memory);
    /// @notice Sum of all clients' stakes.
    function totalStaked() external view returns (uint256);
    /// @notice Tokens the registry holds beyond `totalStaked` (slashed, not yet rewarded or swept).
    function unassigned() external view returns (uint256);
}
