// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IVotingRound
/// @notice The round of stake-based federated learning: open (random selection, stake locks),
/// propose, commit, reveal, settle (majority decision, rewards and slashes, record).
interface IVotingRound {
    // ---------------------------------------------------------------- types
    /// @notice Phase of a round, derived from the clock and the settled flag.
    enum RoundState {
        None, //       not opened (or id out of range)
        Proposing, //  before proposalDeadline
        Committing, // before commitDeadline
        Revealing, //  before revealDeadline
        Settleable, // reveal deadline passed, not yet settled
        Settled //     settled: decision and global model recorded
    }

    /// @notice What a client was selected as in a round.
    enum Role {
        None,
        Proposer,
        Voter
    }

    /// @notice A revealed vote.
    enum Vote {
        None,
        Accept,
        Reject
    }

    /// @notice The outcome of a settled round.
    enum Decision {
        None,
        Accepted,
        Rejected
    }

    /// @notice Deployment parameters (immutable).
    struct Params {
        /// @dev Share of active clients drawn as proposers, basis points (2000 = 20%); at least one.
        uint16 proposerFractionBps;
        /// @dev Upper bound on proposers per round (bounds gas).
        uint16 maxProposers;
        /// @dev Upper bound on voters per round; voters are the other active clients up to this bound.
        uint16 maxVoters;
        /// @dev Stake a proposer locks; slashed to the pool if the round is rejected or it stays silent.
        uint256 proposerStake;
        /// @dev Stake a voter locks; the losing side's stakes are shared by the winning side.
        uint256 voterStake;
        /// @dev Reward per proposer of an accepted round, paid from the pool while it holds tokens.
        uint256 proposerReward;
        /// @dev Seconds from opening to the proposal deadline.
        uint64 proposalPeriod;
        /// @dev Seconds from the proposal deadline to the commit deadline.
        uint64 commitPeriod;
        /// @dev Seconds from the commit deadline to the reveal deadline.
        uint64 revealPeriod;
    }

    /// @notice Everything recorded about one round.
    struct RoundInfo {
        /// @dev Random seed the participants were drawn with.
        bytes32 seed;
        /// @dev Global model hash in force after this round (set at settlement).
        bytes32 globalModelHash;
        /// @dev Aggregate hash with the most accept votes so far (first to reach the count wins ties).
        bytes32 leadingHash;
        /// @dev Timestamps.
        uint64 openedAt;
        uint64 proposalDeadline;
        uint64 commitDeadline;
        uint64 revealDeadline;
        /// @dev Counters.
        uint32 proposerCount;
        uint32 voterCount;
        uint32 proposalCount;
        uint32 commitCount;
        uint32 revealCount;
        /// @dev Accept votes for `leadingHash`.
        uint32 leadingAccepts;
        uint32 rejectCount;
        Decision decision;
        bool settled;
    }

    /// @notice One selected client's record in a round.
    struct Participant {
        Role role;
        /// @dev Proposer: proposed. Voter: committed.
        bool acted;
        /// @dev Voter: revealed.
        bool revealed;
        Vote vote;
        /// @dev Voter: the commitment.
        bytes32 commitment;
        /// @dev Proposer: its update hash. Voter: the revealed aggregate hash.
        bytes32 modelHash;
        /// @dev Proposer: its training sample count.
        uint256 sampleCount;
    }

    // ---------------------------------------------------------------- events
    /// @notice Round `roundId` opened with `seed`; deadlines are unix seconds.
    event RoundOpened(
        uint256 indexed roundId,
        bytes32 seed,
        uint256 proposerCount,
        uint256 voterCount,
        uint64 proposalDeadline,
        uint64 commitDeadline,
        uint64 revealDeadline
    );
    /// @notice `client` was drawn as `role` and its stake locked.
    event ParticipantSelected(uint256 indexed roundId, address indexed client, Role role);
    /// @notice `client` was drawn as `role` but could not cover `requiredStake`; it is removed for good.
    event ParticipantRemoved(
        uint256 indexed roundId, address indexed client, Role role, uint256 freeStake, uint256 requiredStake
    );
    /// @notice `proposer` published an update (`updateHash` of its safetensors bytes, trained on `sampleCount` rows).
    event ProposalSubmitted(uint256 indexed roundId, address indexed proposer, bytes32 updateHash, uint256 sampleCount);
    /// @notice `voter` committed to a hidden vote.
    event VoteCommitted(uint256 indexed roundId, address indexed voter, bytes32 commitment);
    /// @notice `voter` revealed `vote` for the aggregate `aggregateHash`.
    event VoteRevealed(uint256 indexed roundId, address indexed voter, Vote vote, bytes32 aggregateHash);
    /// @notice `client`'s stake for the round was settled: `slashed` taken, `rewarded` paid (stake back is implied).
    event ParticipantSettled(
        uint256 indexed roundId, address indexed client, Role role, bool won, uint256 slashed, uint256 rewarded
    );
    /// @notice Round `roundId` settled with `decision`; `globalModelHash` is the model now in force.
    event RoundSettled(
        uint256 indexed roundId,
        Decision decision,
        bytes32 globalModelHash,
        uint256 acceptVotes,
        uint256 rejectVotes,
        uint256 revealedVotes
    );

    // ---------------------------------------------------------------- errors
    /// @notice A deployment parameter is out of range (`field` names it).
    error RoundInvalidParams(string field);
    /// @notice The action needs round `roundId` to be in `required`, but it is in `current`.
    error RoundNotInState(uint256 roundId, RoundState current, RoundState required);
    /// @notice A new round cannot open while `roundId` is not settled.
    error RoundPreviousNotSettled(uint256 roundId);
    /// @notice Fewer active clients than the two a round needs.
    error RoundNotEnoughClients(uint256 active, uint256 required);
    /// @notice `client` is not selected as `role` in round `roundId`.
    error RoundNotSelected(uint256 roundId, address client, Role role);
    /// @notice `client` already proposed or committed in round `roundId`.
    error RoundAlreadyActed(uint256 roundId, address client);
    /// @notice `voter` already revealed in round `roundId`.
    error RoundAlreadyRevealed(uint256 roundId, address voter);
    /// @notice `voter` reveals without having committed in round `roundId`.
    error RoundNotCommitted(uint256 roundId, address voter);
    /// @notice The reveal does not match `voter`'s commitment.
    error RoundCommitmentMismatch(uint256 roundId, address voter);
    /// @notice A reveal whose vote is neither Accept nor Reject.
    error RoundInvalidVote(Vote vote);
    /// @notice A proposal with a zero hash or zero samples.
    error RoundInvalidProposal(bytes32 updateHash, uint256 sampleCount);
    /// @notice A zero commitment.
    error RoundZeroCommitment();

    // ---------------------------------------------------------------- actions
    /// @notice Open the next round (anyone, once the previous one is settled): draw proposers and
    /// voters with on-chain randomness, lock their stakes, remove those who cannot cover them.
    function openRound() external returns (uint256 roundId);

    /// @notice Publish a proposal before the proposal deadline. Selected proposers only, once.
    function propose(uint256 roundId, bytes32 updateHash, uint256 sampleCount) external;

    /// @notice Commit `commitment = commitmentFor(roundId, msg.sender, vote, aggregateHash, salt)`
    /// after the proposal deadline and before the commit deadline. Selected voters only, once.
    function commitVote(uint256 roundId, bytes32 commitment) external;

    /// @notice Reveal the committed vote after the commit deadline and before the reveal deadline.
    function revealVote(uint256 roundId, Vote vote, bytes32 aggregateHash, bytes32 salt) external;

    /// @notice Settle round `roundId` (anyone, after its reveal deadline): decide, reward, slash, record.
    function settle(uint256 roundId) external;

    // ---------------------------------------------------------------- views
    /// @notice The deployment parameters.
    function params() external view returns (Params memory);
    /// @notice The phase of round `roundId`.
    function state(uint256 roundId) external view returns (RoundState);
    /// @notice The latest opened round id (0 before the first; rounds count from 1).
    function currentRoundId() external view returns (uint256);
    /// @notice The record of round `roundId`.
    function getRound(uint256 roundId) external view returns (RoundInfo memory);
    /// @notice `client`'s record in round `roundId`.
    function getParticipant(uint256 roundId, address client) external view returns (Participant memory);
    /// @notice The global model hash now in force (the initial model until a round is accepted).
    function globalModelHash() external view returns (bytes32);
    /// @notice The hash of the initial model, fixed at deployment.
    function initialModelHash() external view returns (bytes32);
    /// @notice Proposers drawn for round `roundId` (removed ones excluded), in draw order.
    function proposersOf(uint256 roundId) external view returns (address[] memory);
    /// @notice Voters drawn for round `roundId` (removed ones excluded), in draw order.
    function votersOf(uint256 roundId) external view returns (address[] memory);
    /// @notice The proposals submitted in round `roundId`, in submission order.
    function proposalsOf(uint256 roundId)
        external
        view
        returns (address[] memory proposers, bytes32[] memory updateHashes, uint256[] memory sampleCounts);
    /// @notice The commitment a voter must submit: keccak256(abi.encode(roundId, voter, vote, aggregateHash, salt)).
    function commitmentFor(uint256 roundId, address voter, Vote vote, bytes32 aggregateHash, bytes32 salt)
        external
        pure
        returns (bytes32);
    /// @notice The StakeRegistry.
    function registry() external view returns (address);
    /// @notice The ProposalPool.
    function proposalPool() external view returns (address);
}
