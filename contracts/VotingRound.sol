// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IVotingRound} from "./interfaces/IVotingRound.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";
import {IProposalPool} from "./interfaces/IProposalPool.sol";
import {RoundMath} from "./libraries/RoundMath.sol";

/// @title VotingRound
/// @notice One federated-learning epoch per round: open (draw of proposers and voters with the seed
/// the previous round's voters made, optionally mixed with a later block hash, stake locks), propose,
/// commit, reveal (a ballot over the proposals and the parent model hash), settle (each proposal
/// decided on its own, rewards, slashes, the confirmed parent hash). The phase of a round is derived
/// from the clock and the settled flag in `state`; the arithmetic is in RoundMath.
contract VotingRound is IVotingRound, ReentrancyGuard {
    /// @dev What settlement decided, passed between its steps.
    struct Tally {
        uint256[] accepts; //    per proposal, in proposal order
        uint256 acceptedMask; // bit i = proposal i accepted
        uint256 acceptedCount;
        uint256 revealed; //     R
    }

    // ---------------------------------------------------------------- state
    /// @dev Namespace of the draw's sparse map of swapped positions, in transient storage.
    bytes32 private constant _DRAW_NAMESPACE = keccak256("stakefl.VotingRound.draw");
    /// @dev Largest seedBlockDelay accepted (half the 256 blocks whose hashes the EVM keeps).
    uint256 private constant _MAX_SEED_BLOCK_DELAY = 128;
    /// @dev `blockhash` reads only the 256 most recent blocks.
    uint256 private constant _BLOCKHASH_WINDOW = 256;

    IStakeRegistry private immutable _registry;
    IProposalPool private immutable _pool;
    bytes32 private immutable _initialModelHash;
    bytes32 private immutable _initialSeed;

    uint16 private immutable _proposerFractionBps;
    uint16 private immutable _maxProposers;
    uint16 private immutable _maxVoters;
    uint256 private immutable _proposerStake;
    uint256 private immutable _voterStake;
    uint256 private immutable _proposerReward;
    uint64 private immutable _proposalPeriod;
    uint64 private immutable _commitPeriod;
    uint64 private immutable _revealPeriod;
    uint64 private immutable _seedBlockDelay;

    bytes32 private _globalModelHash;
    uint256 private _currentRoundId;
    /// @dev seedBlockDelay > 0: the block whose hash the next round's seed mixes in.
    uint64 private _seedBlock;
    /// @dev The registry's active count right after the latest opening (RoundMath.drawSize).
    uint64 private _drawSnapshot;
    mapping(uint256 roundId => RoundInfo) private _rounds;
    mapping(uint256 roundId => mapping(address client => Participant)) private _participants;
    mapping(uint256 roundId => address[]) private _proposers;
    mapping(uint256 roundId => address[]) private _voters;
    mapping(uint256 roundId => address[]) private _proposalSubmitters;
    /// @dev Accept counts, 16 proposals per word (RoundMath.spreadLanes / laneOf).
    mapping(uint256 roundId => uint256[16]) private _acceptTally;
    mapping(uint256 roundId => mapping(bytes32 parentHash => uint256)) private _parentVotes;

    /// @param registry_ The StakeRegistry (bind it to this contract after deployment).
    /// @param pool_ The ProposalPool (bind it to this contract after deployment).
    /// @param p Deployment parameters; see SPEC.md for the allowed ranges and defaults.
    /// @param initialModelHash_ Hash of the initial global model (also seeds round 1's draw).
    constructor(address registry_, address pool_, Params memory p, bytes32 initialModelHash_) {
        if (registry_ == address(0)) revert RoundInvalidParams("registry");
        if (pool_ == address(0)) revert RoundInvalidParams("proposalPool");
        if (p.proposerFractionBps == 0 || p.proposerFractionBps >= RoundMath.BPS) {
            revert RoundInvalidParams("proposerFractionBps");
        }
        if (p.maxProposers == 0 || p.maxProposers > RoundMath.MAX_PROPOSALS) revert RoundInvalidParams("maxProposers");
        if (p.maxVoters == 0) revert RoundInvalidParams("maxVoters");
        if (p.proposerStake == 0) revert RoundInvalidParams("proposerStake");
        if (p.voterStake == 0) revert RoundInvalidParams("voterStake");
        if (p.proposalPeriod == 0) revert RoundInvalidParams("proposalPeriod");
        if (p.commitPeriod == 0) revert RoundInvalidParams("commitPeriod");
        if (p.revealPeriod == 0) revert RoundInvalidParams("revealPeriod");
        if (p.seedBlockDelay > _MAX_SEED_BLOCK_DELAY) revert RoundInvalidParams("seedBlockDelay");
        _registry = IStakeRegistry(registry_);
        _pool = IProposalPool(pool_);
        _proposerFractionBps = p.proposerFractionBps;
        _maxProposers = p.maxProposers;
        _maxVoters = p.maxVoters;
        _proposerStake = p.proposerStake;
        _voterStake = p.voterStake;
        _proposerReward = p.proposerReward;
        _proposalPeriod = p.proposalPeriod;
        _commitPeriod = p.commitPeriod;
        _revealPeriod = p.revealPeriod;
        _seedBlockDelay = p.seedBlockDelay;
        _initialModelHash = initialModelHash_;
        _initialSeed = RoundMath.initialSeed(address(this), initialModelHash_);
        _globalModelHash = initialModelHash_;
        if (p.seedBlockDelay != 0) _anchorSeedBlock(1);
    }

    // ---------------------------------------------------------------- actions
    /// @inheritdoc IVotingRound
    function openRound() external nonReentrant returns (uint256 roundId) {
        uint256 previous = _currentRoundId;
        if (previous != 0 && !_rounds[previous].settled) revert RoundPreviousNotSettled(previous);
        // clients that joined after the previous opening are not drawn before the round after this one
        uint256 n = RoundMath.drawSize(_drawSnapshot, _registry.activeCount());
        if (n < 2) revert RoundNotEnoughClients(n, 2);
        (uint256 k, uint256 v) = RoundMath.selectionSizes(n, _proposerFractionBps, _maxProposers, _maxVoters);
        bytes32 seed = _seedAfter(previous);
        if (_seedBlockDelay != 0) seed = RoundMath.anchoredSeed(seed, _seedBlockHash());

        roundId = previous + 1;
        _currentRoundId = roundId;
        RoundInfo storage r = _rounds[roundId];
        r.seed = seed;
        r.openedAt = uint64(block.timestamp);
        r.proposalDeadline = r.openedAt + _proposalPeriod;
        r.commitDeadline = r.proposalDeadline + _commitPeriod;
        r.revealDeadline = r.commitDeadline + _revealPeriod;

        // draw first, lock or remove after: a removal reorders the registry's active list
        address[] memory picks = _draw(roundId, seed, n, k + v);
        for (uint256 i = 0; i < picks.length; ++i) {
            _select(roundId, picks[i], i < k ? Role.Proposer : Role.Voter);
        }
        r.proposerCount = uint32(_proposers[roundId].length);
        r.voterCount = uint32(_voters[roundId].length);
        _drawSnapshot = uint64(_registry.activeCount());
        emit RoundOpened(
            roundId, seed, r.proposerCount, r.voterCount, r.proposalDeadline, r.commitDeadline, r.revealDeadline
        );
    }

    /// @inheritdoc IVotingRound
    function propose(uint256 roundId, bytes32 updateHash, uint256 sampleCount) external {
        _requireState(roundId, RoundState.Proposing);
        Participant storage p = _participantAs(roundId, Role.Proposer);
        if (p.acted) revert RoundAlreadyActed(roundId, msg.sender);
        if (updateHash == bytes32(0) || sampleCount == 0) revert RoundInvalidProposal(updateHash, sampleCount);
        p.acted = true;
        p.modelHash = updateHash;
        p.sampleCount = sampleCount;
        _proposalSubmitters[roundId].push(msg.sender);
        _rounds[roundId].proposalCount += 1;
        emit ProposalSubmitted(roundId, msg.sender, updateHash, sampleCount);
    }

    /// @inheritdoc IVotingRound
    function commitVote(uint256 roundId, bytes32 commitment) external {
        _requireState(roundId, RoundState.Committing);
        Participant storage p = _participantAs(roundId, Role.Voter);
        if (p.acted) revert RoundAlreadyActed(roundId, msg.sender);
        if (commitment == bytes32(0)) revert RoundZeroCommitment();
        p.acted = true;
        p.commitment = commitment;
        _rounds[roundId].commitCount += 1;
        emit VoteCommitted(roundId, msg.sender, commitment);
    }

    /// @inheritdoc IVotingRound
    function revealVote(uint256 roundId, uint256 acceptMask, bytes32 parentHash, bytes32 salt) external {
        _requireState(roundId, RoundState.Revealing);
        Participant storage p = _participantAs(roundId, Role.Voter);
        if (!p.acted) revert RoundNotCommitted(roundId, msg.sender);
        if (p.revealed) revert RoundAlreadyRevealed(roundId, msg.sender);
        RoundInfo storage r = _rounds[roundId];
        uint256 proposals = r.proposalCount;
        if (acceptMask >> proposals != 0) revert RoundInvalidBallot(acceptMask, proposals);
        if (commitmentFor(roundId, msg.sender, acceptMask, parentHash, salt) != p.commitment) {
            revert RoundCommitmentMismatch(roundId, msg.sender);
        }
        p.revealed = true;
        p.acceptMask = acceptMask;
        p.modelHash = parentHash;
        r.revealCount += 1;
        r.saltMix ^= RoundMath.saltShare(msg.sender, salt);

        for (uint256 w = 0; w * RoundMath.LANES_PER_WORD < proposals; ++w) {
            uint256 bits = (acceptMask >> (w * RoundMath.LANES_PER_WORD)) & RoundMath.LANE_MASK;
            if (bits != 0) _acceptTally[roundId][w] += RoundMath.spreadLanes(bits);
        }
        uint256 votes = ++_parentVotes[roundId][parentHash];
        // strictly greater: the first hash to reach a count keeps the lead on ties
        if (votes > r.leadingParentVotes) {
            r.leadingParentVotes = uint32(votes);
            r.leadingParentHash = parentHash;
        }
        emit VoteRevealed(roundId, msg.sender, acceptMask, parentHash);
    }

    /// @inheritdoc IVotingRound
    function settle(uint256 roundId) external nonReentrant {
        _requireState(roundId, RoundState.Settleable);
        RoundInfo storage r = _rounds[roundId];
        uint256 revealed = r.revealCount;
        uint256[] memory accepts = _acceptsOf(roundId, r.proposalCount);
        (uint256 acceptedMask, uint256 acceptedCount) = RoundMath.decide(accepts, revealed);
        Tally memory t = Tally(accepts, acceptedMask, acceptedCount, revealed);
        Decision decision = t.acceptedCount > 0 ? Decision.Accepted : Decision.Rejected;
        bool confirmed = RoundMath.isMajority(r.leadingParentVotes, t.revealed);
        if (confirmed) _globalModelHash = r.leadingParentHash;
        bytes32 model = _globalModelHash;
        // mark settled before any external call
        r.settled = true;
        r.decision = decision;
        r.globalModelHash = model;
        r.acceptedMask = t.acceptedMask;
        r.acceptedCount = uint32(t.acceptedCount);
        emit ParentHashTallied(roundId, r.leadingParentHash, r.leadingParentVotes, t.revealed, confirmed);
        if (_seedBlockDelay != 0) _anchorSeedBlock(roundId + 1);

        _settleProposers(roundId, t);
        _settleVoters(roundId, t);
        // slashed stakes nobody won and rounding dust go to the pool
        _registry.sweepUnassigned();
        emit RoundSettled(roundId, decision, model, t.acceptedMask, t.acceptedCount, t.revealed);
    }

    /// @inheritdoc IVotingRound
    function reanchorSeedBlock() external returns (uint256 seedBlock) {
        if (_seedBlockDelay == 0) revert RoundSeedBlockDisabled();
        uint256 latest = _currentRoundId;
        if (latest != 0 && !_rounds[latest].settled) revert RoundPreviousNotSettled(latest);
        uint256 anchored = _seedBlock;
        if (block.number <= anchored + _BLOCKHASH_WINDOW) revert RoundSeedBlockNotExpired(anchored, block.number);
        seedBlock = _anchorSeedBlock(latest + 1);
    }

    // ---------------------------------------------------------------- views
    /// @inheritdoc IVotingRound
    function params() external view returns (Params memory) {
        return Params({
            proposerFractionBps: _proposerFractionBps,
            maxProposers: _maxProposers,
            maxVoters: _maxVoters,
            proposerStake: _proposerStake,
            voterStake: _voterStake,
            proposerReward: _proposerReward,
            proposalPeriod: _proposalPeriod,
            commitPeriod: _commitPeriod,
            revealPeriod: _revealPeriod,
            seedBlockDelay: _seedBlockDelay
        });
    }

    /// @inheritdoc IVotingRound
    function state(uint256 roundId) external view returns (RoundState) {
        return _state(roundId);
    }

    /// @inheritdoc IVotingRound
    function currentRoundId() external view returns (uint256) {
        return _currentRoundId;
    }

    /// @inheritdoc IVotingRound
    function getRound(uint256 roundId) external view returns (RoundInfo memory) {
        return _rounds[roundId];
    }

    /// @inheritdoc IVotingRound
    function getParticipant(uint256 roundId, address client) external view returns (Participant memory) {
        return _participants[roundId][client];
    }

    /// @inheritdoc IVotingRound
    function globalModelHash() external view returns (bytes32) {
        return _globalModelHash;
    }

    /// @inheritdoc IVotingRound
    function initialModelHash() external view returns (bytes32) {
        return _initialModelHash;
    }

    /// @inheritdoc IVotingRound
    function initialSeed() external view returns (bytes32) {
        return _initialSeed;
    }

    /// @inheritdoc IVotingRound
    function nextSeed() external view returns (bytes32) {
        bytes32 seed = _seedAfter(_currentRoundId);
        if (_seedBlockDelay == 0) return seed;
        if (_latestRoundLive()) return bytes32(0);
        uint256 anchor = _seedBlock;
        if (block.number <= anchor || block.number > anchor + _BLOCKHASH_WINDOW) return bytes32(0);
        return RoundMath.anchoredSeed(seed, blockhash(anchor));
    }

    /// @inheritdoc IVotingRound
    function nextSeedBlock() external view returns (uint256) {
        return _nextSeedBlock();
    }

    /// @inheritdoc IVotingRound
    function nextDrawSize() external view returns (uint256) {
        return RoundMath.drawSize(_drawSnapshot, _registry.activeCount());
    }

    /// @inheritdoc IVotingRound
    function proposersOf(uint256 roundId) external view returns (address[] memory) {
        return _proposers[roundId];
    }

    /// @inheritdoc IVotingRound
    function votersOf(uint256 roundId) external view returns (address[] memory) {
        return _voters[roundId];
    }

    /// @inheritdoc IVotingRound
    function proposalsOf(uint256 roundId)
        external
        view
        returns (address[] memory proposers, bytes32[] memory updateHashes, uint256[] memory sampleCounts)
    {
        proposers = _proposalSubmitters[roundId];
        updateHashes = new bytes32[](proposers.length);
        sampleCounts = new uint256[](proposers.length);
        for (uint256 i = 0; i < proposers.length; ++i) {
            Participant storage p = _participants[roundId][proposers[i]];
            updateHashes[i] = p.modelHash;
            sampleCounts[i] = p.sampleCount;
        }
    }

    /// @inheritdoc IVotingRound
    function proposalAccepts(uint256 roundId) external view returns (uint256[] memory) {
        return _acceptsOf(roundId, _rounds[roundId].proposalCount);
    }

    /// @inheritdoc IVotingRound
    function parentHashVotes(uint256 roundId, bytes32 parentHash) external view returns (uint256) {
        return _parentVotes[roundId][parentHash];
    }

    /// @inheritdoc IVotingRound
    function commitmentFor(uint256 roundId, address voter, uint256 acceptMask, bytes32 parentHash, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(roundId, voter, acceptMask, parentHash, salt));
    }

    /// @inheritdoc IVotingRound
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IVotingRound
    function proposalPool() external view returns (address) {
        return address(_pool);
    }

    // ---------------------------------------------------------------- internal: the seed block
    /// @dev Anchor round `roundId`'s seed to block `block.number + seedBlockDelay`.
    function _anchorSeedBlock(uint256 roundId) private returns (uint256 seedBlock) {
        seedBlock = block.number + _seedBlockDelay;
        _seedBlock = uint64(seedBlock);
        emit SeedBlockAnchored(roundId, seedBlock);
    }

    /// @dev The hash of the next round's seed block; reverts while it is not mined or once it expired.
    function _seedBlockHash() private view returns (bytes32) {
        uint256 anchor = _seedBlock;
        if (block.number <= anchor) revert RoundSeedBlockNotReached(anchor, block.number);
        if (block.number > anchor + _BLOCKHASH_WINDOW) revert RoundSeedBlockExpired(anchor, block.number);
        return blockhash(anchor);
    }

    /// @dev The next round's seed block: 0 without one, or while the latest round is live.
    function _nextSeedBlock() private view returns (uint256) {
        if (_seedBlockDelay == 0 || _latestRoundLive()) return 0;
        return _seedBlock;
    }

    /// @dev True while the latest round is opened and not settled.
    function _latestRoundLive() private view returns (bool) {
        uint256 latest = _currentRoundId;
        return latest != 0 && !_rounds[latest].settled;
    }

    // ---------------------------------------------------------------- internal: the draw
    /// @dev The seed of round `roundId + 1`: from round `roundId`'s seed and salt mix (seed_0, 0 before round 1).
    function _seedAfter(uint256 roundId) private view returns (bytes32) {
        if (roundId == 0) return RoundMath.roundSeed(_initialSeed, bytes32(0), 1, address(this));
        RoundInfo storage r = _rounds[roundId];
        return RoundMath.roundSeed(r.seed, r.saltMix, roundId + 1, address(this));
    }

    /// @dev The first `count` picks of a partial Fisher-Yates shuffle of the registry's `n` active
    /// clients, reading only the positions it touches: positions already swapped live in a sparse
    /// map in transient storage (namespaced by round), the others are read with `activeClientAt`.
    /// Picks the same clients as shuffling a full copy of the active list.
    function _draw(uint256 roundId, bytes32 seed, uint256 n, uint256 count) private returns (address[] memory picks) {
        picks = new address[](count);
        for (uint256 i = 0; i < count; ++i) {
            uint256 j = RoundMath.drawIndex(seed, i, n);
            picks[i] = _activeAt(roundId, j);
            // position i is never read again (later picks draw from i + 1 on); j takes its client
            if (j != i) _swapIn(roundId, j, _activeAt(roundId, i));
        }
    }

    /// @dev The client at position `pos` of the shuffled active list.
    function _activeAt(uint256 roundId, uint256 pos) private view returns (address client) {
        bytes32 slot = _drawSlot(roundId, pos);
        assembly ("memory-safe") {
            client := tload(slot)
        }
        // active clients are never the zero address: zero means "not swapped"
        if (client == address(0)) client = _registry.activeClientAt(pos);
    }

    /// @dev Record that position `pos` of the shuffled active list now holds `client`.
    function _swapIn(uint256 roundId, uint256 pos, address client) private {
        bytes32 slot = _drawSlot(roundId, pos);
        assembly ("memory-safe") {
            tstore(slot, client)
        }
    }

    /// @dev Transient slot of position `pos` in round `roundId`'s draw.
    function _drawSlot(uint256 roundId, uint256 pos) private pure returns (bytes32) {
        return keccak256(abi.encode(_DRAW_NAMESPACE, roundId, pos));
    }

    /// @dev Draw `client` as `role`: lock its stake, or remove it for good if it cannot cover it.
    function _select(uint256 roundId, address client, Role role) private {
        uint256 required = role == Role.Proposer ? _proposerStake : _voterStake;
        uint256 free = _registry.freeStakeOf(client);
        if (free < required) {
            _registry.remove(client);
            emit ParticipantRemoved(roundId, client, role, free, required);
            return;
        }
        _participants[roundId][client].role = role;
        if (role == Role.Proposer) _proposers[roundId].push(client);
        else _voters[roundId].push(client);
        emit ParticipantSelected(roundId, client, role);
        _registry.lock(client, required);
    }

    // ---------------------------------------------------------------- internal: settlement
    /// @dev Silent proposers and proposers of rejected proposals are slashed; proposers of accepted
    /// proposals get their stake back and an equal share of min(proposerReward * accepted, pool).
    function _settleProposers(uint256 roundId, Tally memory t) private {
        uint256 stake = _proposerStake;
        address[] storage drawn = _proposers[roundId];
        for (uint256 i = 0; i < drawn.length; ++i) {
            address c = drawn[i];
            if (_participants[roundId][c].acted) continue;
            _registry.slash(c, stake);
            emit ParticipantSettled(roundId, c, Role.Proposer, false, stake, 0);
        }
        uint256 share = 0;
        if (t.acceptedCount > 0) {
            share = RoundMath.proposerShare(_proposerReward, t.acceptedCount, _pool.balance());
            if (share > 0) _pool.release(share * t.acceptedCount);
        }
        address[] storage submitters = _proposalSubmitters[roundId];
        for (uint256 i = 0; i < submitters.length; ++i) {
            address c = submitters[i];
            bool accepted = (t.acceptedMask >> i) & 1 != 0;
            emit ProposalSettled(roundId, c, i, accepted, t.accepts[i], t.revealed);
            if (accepted) {
                _registry.unlock(c, stake);
                if (share > 0) _registry.reward(c, share);
                emit ParticipantSettled(roundId, c, Role.Proposer, true, 0, share);
            } else {
                _registry.slash(c, stake);
                emit ParticipantSettled(roundId, c, Role.Proposer, false, stake, 0);
            }
        }
    }

    /// @dev Each voter is slashed ceil(S * m / P) for its m verdicts against the decisions and rewarded
    /// its per-proposal shares / P (RoundMath.voterOutcome). Every slash first, then unlocks and rewards.
    /// Without proposals the voters are judged on one virtual proposal nobody accepts: those that
    /// revealed win it, the others lose their stake.
    function _settleVoters(uint256 roundId, Tally memory t) private {
        address[] storage voters = _voters[roundId];
        uint256 stake = _voterStake;
        uint256[] memory judged = t.accepts.length > 0 ? t.accepts : new uint256[](1);
        uint256[] memory shares = RoundMath.proposalShares(judged, t.acceptedMask, t.revealed, voters.length, stake);
        uint256[] memory slashes = new uint256[](voters.length);
        uint256[] memory rewards = new uint256[](voters.length);
        bool[] memory won = new bool[](voters.length);
        for (uint256 i = 0; i < voters.length; ++i) {
            Participant storage p = _participants[roundId][voters[i]];
            (slashes[i], rewards[i], won[i]) =
                RoundMath.voterOutcome(p.revealed, p.acceptMask, t.acceptedMask, shares, stake);
            if (slashes[i] > 0) _registry.slash(voters[i], slashes[i]);
        }
        for (uint256 i = 0; i < voters.length; ++i) {
            address c = voters[i];
            if (slashes[i] < stake) _registry.unlock(c, stake - slashes[i]);
            if (rewards[i] > 0) _registry.reward(c, rewards[i]);
            emit ParticipantSettled(roundId, c, Role.Voter, won[i], slashes[i], rewards[i]);
        }
    }

    /// @dev Accept counts of the `proposals` proposals of `roundId`, unpacked from the tally.
    function _acceptsOf(uint256 roundId, uint256 proposals) private view returns (uint256[] memory accepts) {
        uint256[16] storage tally = _acceptTally[roundId];
        accepts = new uint256[](proposals);
        for (uint256 i = 0; i < proposals; ++i) {
            accepts[i] = RoundMath.laneOf(
                tally[i / RoundMath.LANES_PER_WORD], i % RoundMath.LANES_PER_WORD
            );
        }
    }

    // ---------------------------------------------------------------- internal: phases
    /// @dev The phase of `roundId`, derived from the settled flag and the clock.
    function _state(uint256 roundId) private view returns (RoundState) {
        if (roundId == 0 || roundId > _currentRoundId) return RoundState.None;
        RoundInfo storage r = _rounds[roundId];
        if (r.settled) return RoundState.Settled;
        if (block.timestamp < r.proposalDeadline) return RoundState.Proposing;
        if (block.timestamp < r.commitDeadline) return RoundState.Committing;
        if (block.timestamp < r.revealDeadline) return RoundState.Revealing;
        return RoundState.Settleable;
    }

    /// @dev The one state guard: revert unless `roundId` is in `required`.
    function _requireState(uint256 roundId, RoundState required) private view {
        RoundState current = _state(roundId);
        if (current != required) revert RoundNotInState(roundId, current, required);
    }

    /// @dev The caller's record in `roundId`, which must carry `role`.
    function _participantAs(uint256 roundId, Role role) private view returns (Participant storage p) {
        p = _participants[roundId][msg.sender];
        if (p.role != role) revert RoundNotSelected(roundId, msg.sender, role);
    }
}
