// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IStakeRegistry} from "../interfaces/IStakeRegistry.sol";
import {IProposalPool} from "../interfaces/IProposalPool.sol";
import {IVotingRound} from "../interfaces/IVotingRound.sol";

/// @title ProtocolLens
/// @notice Tests only: reads the whole observable state of a deployment in one `eth_call`, so
/// the stateful test can compare it with its model after every step without paying Ape's
/// per-call overhead dozens of times. Only calls the contracts' public views.
contract ProtocolLens {
    /// @notice One client as the registry and the token see it.
    struct ClientView {
        uint256 stake;
        uint256 locked;
        uint256 wallet;
        bool active;
        bool removed;
    }

    /// @notice Everything the stateful test compares with its model.
    struct ProtocolView {
        ClientView[] clients;
        address[] active;
        uint256 totalStaked;
        uint256 unassigned;
        uint256 registryBalance;
        uint256 poolBalance;
        uint256 totalSupply;
        uint256 currentRoundId;
        bytes32 globalModelHash;
        uint256 timestamp;
        IVotingRound.RoundState state;
        IVotingRound.RoundInfo round;
        address[] proposalSubmitters;
        bytes32[] proposalHashes;
        uint256[] proposalSamples;
        uint256[] proposalAccepts;
        bytes32 nextSeed;
        uint256 nextSeedBlock;
        uint256 nextDrawSize;
        uint256 blockNumber; // the block context this call ran in (nextSeed depends on it)
    }

    /// @notice Read registry, pool, token and the current round of `voting` for `clients`.
    function read(IVotingRound voting, address[] calldata clients) external view returns (ProtocolView memory v) {
        IStakeRegistry registry = IStakeRegistry(voting.registry());
        IProposalPool pool = IProposalPool(voting.proposalPool());
        IERC20 token = IERC20(registry.token());
        v.clients = new ClientView[](clients.length);
        for (uint256 i = 0; i < clients.length; ++i) {
            address c = clients[i];
            v.clients[i] = ClientView({
                stake: registry.stakeOf(c),
                locked: registry.lockedOf(c),
                wallet: token.balanceOf(c),
                active: registry.isActive(c),
                removed: registry.isRemoved(c)
            });
        }
        v.active = registry.activeClients();
        v.totalStaked = registry.totalStaked();
        v.unassigned = registry.unassigned();
        v.registryBalance = token.balanceOf(address(registry));
        v.poolBalance = pool.balance();
        v.totalSupply = token.totalSupply();
        v.currentRoundId = voting.currentRoundId();
        v.globalModelHash = voting.globalModelHash();
        v.timestamp = block.timestamp;
        v.state = voting.state(v.currentRoundId);
        v.round = voting.getRound(v.currentRoundId);
        (v.proposalSubmitters, v.proposalHashes, v.proposalSamples) = voting.proposalsOf(v.currentRoundId);
        v.proposalAccepts = voting.proposalAccepts(v.currentRoundId);
        v.nextSeed = voting.nextSeed();
        v.nextSeedBlock = voting.nextSeedBlock();
        v.nextDrawSize = voting.nextDrawSize();
        v.blockNumber = block.number;
    }
}
