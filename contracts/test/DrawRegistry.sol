// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title DrawRegistry
/// @notice Tests only: the part of the StakeRegistry that `VotingRound.openRound` uses (active list,
/// free stakes, lock, swap-and-pop removal), with the active list and free stakes set directly, so
/// the draw can be compared with a reference Fisher-Yates on any active set without deposits.
contract DrawRegistry {
    address[] private _active;
    mapping(address client => uint256) private _free;
    mapping(address client => uint256) private _indexPlusOne;

    /// @notice Append `clients` to the active set with free stakes `free`.
    function addActive(address[] calldata clients, uint256[] calldata free) external {
        for (uint256 i = 0; i < clients.length; ++i) {
            _active.push(clients[i]);
            _indexPlusOne[clients[i]] = _active.length;
            _free[clients[i]] = free[i];
        }
    }

    /// @notice Number of active clients.
    function activeCount() external view returns (uint256) {
        return _active.length;
    }

    /// @notice The active client at `index`.
    function activeClientAt(uint256 index) external view returns (address) {
        return _active[index];
    }

    /// @notice Every active client, in order.
    function activeClients() external view returns (address[] memory) {
        return _active;
    }

    /// @notice Free stake of `client`.
    function freeStakeOf(address client) external view returns (uint256) {
        return _free[client];
    }

    /// @notice Lock `amount` of `client`'s free stake.
    function lock(address client, uint256 amount) external {
        require(_indexPlusOne[client] != 0, "not active");
        _free[client] -= amount;
    }

    /// @notice Remove `client` by swap-and-pop, as StakeRegistry.remove.
    function remove(address client) external {
        uint256 indexPlusOne = _indexPlusOne[client];
        require(indexPlusOne != 0, "not active");
        address last = _active[_active.length - 1];
        _active[indexPlusOne - 1] = last;
        _indexPlusOne[last] = indexPlusOne;
        _active.pop();
        _indexPlusOne[client] = 0;
    }
}
