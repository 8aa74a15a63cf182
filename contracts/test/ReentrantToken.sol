// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken
/// @notice Tests only: a mintable ERC-20 with a transfer hook (like ERC-777 or a malicious token)
/// that calls `target` with `data` on every balance change once armed, and bubbles up its revert.
/// Used to show that the protocol's token-moving entry points cannot be re-entered.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public data;

    constructor() ERC20("Reentrant Test Token", "RNT") {}

    /// @notice Mint `amount` tokens to `to` (unrestricted; tests only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Call `target_` with `data_` on every later transfer (zero address disarms).
    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address t = target;
        if (t == address(0)) return;
        target = address(0); // one shot
        (bool ok, bytes memory ret) = t.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
