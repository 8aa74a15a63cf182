// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice Mintable ERC-20 for local chains and tests only. Anyone may mint.
contract TestToken is ERC20 {
    constructor() ERC20("Stake Test Token", "STK") {}

    /// @notice Mint `amount` tokens to `to`. Unrestricted: never deploy outside local chains.
    /// @param to Receiver of the new tokens.
    /// @param amount Amount in the token's smallest unit.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
