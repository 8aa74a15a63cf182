// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IVotingRound} from "./interfaces/IVotingRound.sol";
import {IStakeRegistry} from "./interfaces/IStakeRegistry.sol";
import {IProposalPool} from "./interfaces/IProposalPool.sol";
import {RoundMath} from "./libraries/RoundMath.sol";

/// @title VotingRound
/// @notice One federated-learning epoch per round: open (random draw of proposers and voters,
/// stake locks), propose, commit, reveal, settle (majority decision, rewards, slashes, record).
/// The phase of a round is derived from the clock and the settled flag in `state`.
contract VotingRound is IVotingRound, ReentrancyGuard {
    // ---------------------------------------------------------------- state
    IStakeRegistry private immutable _registry;
    IProposalPool private immutable _pool;
    bytes32 private immutable _initialModelHash;

    uint16 private immutable _proposerFractionBps;
    uint16 private immutable _maxProposers;
    uint16 private immutable _maxVoters;
    uint256 private immutable _proposerStake;
    uint256 private immutable _voterStake;
    uint256 private immutable _proposerReward;
    uint64 private immutable _proposalPeriod;
    uint64 private immutable _commitPeriod;
    uint64 private immutable _revealPeriod;

    bytes32 private _globalModelHash;
    uint256 private _currentRoundId;
    mapping(uint256 roundId => RoundInfo) private _rounds;
    mapping(uint256 roundId => mapping(address client => Participant)) private _participants;
    mapping(uint256 roundId => address[]) private _proposers;
    mapping(uint256 roundId => address[]) private _voters;
    mapping(uint256 roundId => address[]) private _proposalSubmitters;
    mapping(uint256 roundId => mapping(bytes32 aggregateHash => uint256)) private _acceptsFor;

    /// @param registry_ The StakeRegistry (bind it to this contract after deployment).
    /// @param pool_ The ProposalPool (bind it to this contract after deployment).
    /// @param p Deployment parameters; see SPEC.md for the allowed ranges and defaults.
    /// @param initialModelHash_ Hash of the initial global model.
    constructor(address registry_, address pool_, Params memory p, bytes32 initialModelHash_) {
        if (registry_ == address(0)) revert RoundInvalidParams("registry");
        if (pool_ == address(0)) revert RoundInvalidParams("proposalPool");
        if (p.proposerFractionBps == 0 || p.proposerFractionBps >= RoundMath.BPS) {
            revert RoundInvalidParams("proposerFractionBps");
        }
        if (p.maxProposers == 0) revert RoundInvalidParams("maxProposers");
        if (p.maxVoters == 0) revert RoundInvalidParams("maxVoters");
        if (p.proposerStake == 0) revert RoundInvalidParams("proposerStake");
        if (p.voterStake == 0) revert RoundInvalidParams("voterStake");
        if (p.proposalPeriod == 0) revert RoundInvalidParams("proposalPeriod");
        if (p.commitPeriod == 0) revert RoundInvalidParams("commitPeriod");
        if (p.revealPeriod == 0) revert RoundInvalidParams("revealPeriod");
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
        _initialModelHash = initialModelHash_;
        _globalModelHash = initialModelHash_;
    }

    // ---------------------------------------------------------------- actions
    /// @inheritdoc IVotingRound
    function openRound() external nonReentrant returns (uint256 roundId) {
        uint256 previous = _currentRoundId;
        if (previous != 0 && !_rounds[previous].settled) revert RoundPreviousNotSettled(previous);
        address[] memory clients = _registry.activeClients();
        uint256 n = clients.length;
        if (n < 2) revert RoundNotEnoughClients(n, 2);
        (uint256 k, uint256 v) = RoundMath.selectionSizes(n, _proposerFractionBps, _maxProposers, _maxVoters);

        roundId = previous + 1;
        _currentRoundId = roundId;
        bytes32 seed = keccak256(abi.encode(blockhash(block.number - 1), block.prevrandao, roundId, address(this)));
        RoundInfo storage r = _rounds[roundId];
        r.seed = seed;
        r.openedAt = uint64(block.timestamp);
        r.proposalDeadline = r.openedAt + _proposalPeriod;
        r.commitDeadline = r.proposalDeadline + _commitPeriod;
        r.revealDeadline = r.commitDeadline + _revealPeriod;

        // partial Fisher-Yates over a memory copy: the first k picks propose, the next v vote
        for (uint256 i = 0; i < k + v; ++i) {
            uint256 j = RoundMath.drawIndex(seed, i, n);
            address picked = clients[j];
            clients[j] = clients[i];
            clients[i] = picked;
            _select(roundId, picked, i < k ? Role.Proposer : Role.Voter);
        }
        r.proposerCount = uint32(_proposers[roundId].length);
        r.voterCount = uint32(_voters[roundId].length);
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
    function revealVote(uint256 roundId, Vote vote, bytes32 aggregateHash, bytes32 salt) external {
        _requireState(roundId, RoundState.Revealing);
        Participant storage p = _participantAs(roundId, Role.Voter);
        if (!p.acted) revert RoundNotCommitted(roundId, msg.sender);
        if (p.revealed) revert RoundAlreadyRevealed(roundId, msg.sender);
        if (vote != Vote.Accept && vote != Vote.Reject) revert RoundInvalidVote(vote);
        if (commitmentFor(roundId, msg.sender, vote, aggregateHash, salt) != p.commitment) {
            revert RoundCommitmentMismatch(roundId, msg.sender);
        }
        p.revealed = true;
        p.vote = vote;
        p.modelHash = aggregateHash;
        RoundInfo storage r = _rounds[roundId];
        r.revealCount += 1;
        if (vote == Vote.Accept) {
            uint256 accepts = ++_acceptsFor[roundId][aggregateHash];
            // strictly greater: the first hash to reach a count keeps the lead on ties
            if (accepts > r.leadingAccepts) {
                r.leadingAccepts = uint32(accepts);
                r.leadingHash = aggregateHash;
            }
        } else {
            r.rejectCount += 1;
        }
        emit VoteRevealed(roundId, msg.sender, vote, aggregateHash);
    }

    /// @inheritdoc IVotingRound
    function settle(uint256 roundId) external nonReentrant {
        _requireState(roundId, RoundState.Settleable);
        RoundInfo storage r = _rounds[roundId];
        bool accepted = 2 * uint256(r.leadingAccepts) > r.revealCount;
        Decision decision = accepted ? Decision.Accepted : Decision.Rejected;
        bytes32 leadingHash = r.leadingHash;
        if (accepted) _globalModelHash = leadingHash;
        bytes32 model = _globalModelHash;
        // mark settled before any external call
        r.settled = true;
        r.decision = decision;
        r.globalModelHash = model;

        // 1. every slash first (losing proposers, then losing voters); 2. pay proposers; 3. pay voters
        uint256 winners = _slashLosers(roundId, accepted, leadingHash);
        if (accepted) _payProposers(roundId, r.proposalCount);
        _payVoters(roundId, accepted, leadingHash, winners);

        // 4. slashed proposer stakes, unpaid voter stakes and rounding dust go to the pool
        _registry.sweepUnassigned();
        emit RoundSettled(roundId, decision, model, r.leadingAccepts, r.rejectCount, r.revealCount);
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
            revealPeriod: _revealPeriod
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
    function commitmentFor(uint256 roundId, address voter, Vote vote, bytes32 aggregateHash, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(roundId, voter, vote, aggregateHash, salt));
    }

    /// @inheritdoc IVotingRound
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IVotingRound
    function proposalPool() external view returns (address) {
        return address(_pool);
    }

    // ---------------------------------------------------------------- internal
    /// @dev Slash every losing participant of `roundId`; returns the number of winning voters.
    function _slashLosers(uint256 roundId, bool accepted, bytes32 leadingHash) private returns (uint256 winners) {
        address[] storage proposers = _proposers[roundId];
        uint256 proposerStake = _proposerStake;
        for (uint256 i = 0; i < proposers.length; ++i) {
            address c = proposers[i];
            if (!(accepted && _participants[roundId][c].acted)) {
                _registry.slash(c, proposerStake);
                emit ParticipantSettled(roundId, c, Role.Proposer, false, proposerStake, 0);
            }
        }
        address[] storage voters = _voters[roundId];
        uint256 voterStake = _voterStake;
        for (uint256 i = 0; i < voters.length; ++i) {
            address c = voters[i];
            if (_votedWith(_participants[roundId][c], accepted, leadingHash)) {
                ++winners;
            } else {
                _registry.slash(c, voterStake);
                emit ParticipantSettled(roundId, c, Role.Voter, false, voterStake, 0);
            }
        }
    }

    /// @dev Accepted round: each of the `proposed` proposers that proposed gets its stake back and an
    /// equal share of min(proposerReward * proposed, pool balance), released from the pool once.
    function _payProposers(uint256 roundId, uint256 proposed) private {
        if (proposed == 0) return;
        uint256 perProposer = RoundMath.proposerShare(_proposerReward, proposed, _pool.balance());
        if (perProposer > 0) _pool.release(perProposer * proposed);
        address[] storage proposers = _proposers[roundId];
        uint256 proposerStake = _proposerStake;
        for (uint256 i = 0; i < proposers.length; ++i) {
            address c = proposers[i];
            if (!_participants[roundId][c].acted) continue;
            _registry.unlock(c, proposerStake);
            if (perProposer > 0) _registry.reward(c, perProposer);
            emit ParticipantSettled(roundId, c, Role.Proposer, true, 0, perProposer);
        }
    }

    /// @dev Winning voters get their stake back and an equal share of the losing voters' stakes.
    function _payVoters(uint256 roundId, bool accepted, bytes32 leadingHash, uint256 winners) private {
        if (winners == 0) return;
        address[] storage voters = _voters[roundId];
        uint256 voterStake = _voterStake;
        uint256 perVoter = RoundMath.voterShare(voters.length - winners, voterStake, winners);
        for (uint256 i = 0; i < voters.length; ++i) {
            address c = voters[i];
            if (!_votedWith(_participants[roundId][c], accepted, leadingHash)) continue;
            _registry.unlock(c, voterStake);
            if (perVoter > 0) _registry.reward(c, perVoter);
            emit ParticipantSettled(roundId, c, Role.Voter, true, 0, perVoter);
        }
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

    /// @dev True if voter `p` revealed the vote matching the decision
    /// (Accepted: Accept for `leadingHash`; Rejected: Reject).
    function _votedWith(Participant storage p, bool accepted, bytes32 leadingHash) private view returns (bool) {
        if (!p.revealed) return false;
        if (accepted) return p.vote == Vote.Accept && p.modelHash == leadingHash;
        return p.vote == Vote.Reject;
    }
}
