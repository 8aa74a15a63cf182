// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IVotingRound
/// @notice The round of stake-based federated learning: open (draw proposers and voters with a
/// seed the previous round's voters made, lock stakes), propose, commit, reveal (a ballot over the
/// round's proposals and the parent model hash), settle (per-proposal decisions, rewards and
/// slashes, the parent model hash a voter majority confirmed).
/// Protocol v2 (notes/PROTOCOL_V2.md). Additions beyond that interface: the views `nextSeed`,
/// `initialSeed`, `parentHashVotes`, `nextSeedBlock`, `nextDrawSize`, the event `ParentHashTallied`,
/// and the seed block (`Params.seedBlockDelay`, `reanchorSeedBlock`, `SeedBlockAnchored`, SPEC.md "Randomness").
interface IVotingRound {
    // ---------------------------------------------------------------- types
    /// @notice Phase of a round, derived from the clock and the settled flag.
    enum RoundState {
        None, //       not opened (or id out of range)
        Proposing, //  before proposalDeadline
        Committing, // before commitDeadline
        Revealing, //  before revealDeadline
        Settleable, // reveal deadline passed, not yet settled
        Settled //     settled: decisions and the confirmed model recorded
    }

    /// @notice What a client was selected as in a round.
    enum Role {
        None,
        Proposer,
        Voter
    }

    /// @notice The outcome of a settled round.
    enum Decision {
        None,
        Accepted, // at least one proposal accepted
        Rejected //  no proposal accepted
    }

    /// @notice Deployment parameters (immutable).
    struct Params {
        /// @dev Share of active clients drawn as proposers, basis points (2000 = 20%); at least one.
        uint16 proposerFractionBps;
        /// @dev Upper bound on proposers per round (bounds gas); at most 256, one ballot bit each.
        uint16 maxProposers;
        /// @dev Upper bound on voters per round; voters are the other active clients up to this bound.
        uint16 maxVoters;
        /// @dev Stake a proposer locks; slashed to the pool if its proposal is rejected or it stays silent.
        uint256 proposerStake;
        /// @dev Stake a voter locks; slashed by the share of proposals it judged against the majority.
        uint256 voterStake;
        /// @dev Reward per accepted proposal, paid from the pool while it holds tokens.
        uint256 proposerReward;
        /// @dev Seconds from opening to the proposal deadline.
        uint64 proposalPeriod;
        /// @dev Seconds from the proposal deadline to the commit deadline.
        uint64 commitPeriod;
        /// @dev Seconds from the commit deadline to the reveal deadline.
        uint64 revealPeriod;
        /// @dev 0: the seed is the salt mix alone (reproducible; simulations). d > 0 (at most 128): each
        /// round's seed also mixes in the hash of a block d blocks after the previous settlement (the
        /// seed block), unknown when the reveals close; `openRound` waits for that block.
        uint64 seedBlockDelay;
    }

    /// @notice Everything recorded about one round.
    struct RoundInfo {
        /// @dev Seed the participants were drawn with (fixed when the previous round settled).
        bytes32 seed;
        /// @dev Global model hash recorded at settlement: the parent hash a majority of this round's
        /// revealed voters confirmed, else the hash recorded before (it lags one round behind).
        bytes32 globalModelHash;
        /// @dev Parent hash with the most votes so far (the first to reach a count keeps the lead).
        bytes32 leadingParentHash;
        /// @dev XOR of keccak256(abi.encode(voter, salt)) over the revealed voters: next round's entropy.
        bytes32 saltMix;
        /// @dev Set at settlement: bit i set = proposal i accepted.
        uint256 acceptedMask;
        /// @dev Block timestamp of `openRound`.
        uint64 openedAt;
        /// @dev End of the proposal phase (unix seconds).
        uint64 proposalDeadline;
        /// @dev End of the commit phase (unix seconds).
        uint64 commitDeadline;
        /// @dev End of the reveal phase (unix seconds).
        uint64 revealDeadline;
        /// @dev Proposers drawn (removed clients excluded).
        uint32 proposerCount;
        /// @dev Voters drawn (removed clients excluded).
        uint32 voterCount;
        /// @dev Proposals submitted (P); proposal i is the i-th submitted.
        uint32 proposalCount;
        /// @dev Voters that committed.
        uint32 commitCount;
        /// @dev Voters that revealed (R).
        uint32 revealCount;
        /// @dev Votes for `leadingParentHash`.
        uint32 leadingParentVotes;
        /// @dev Set at settlement: proposals accepted.
        uint32 acceptedCount;
        /// @dev Set at settlement: Accepted iff at least one proposal was accepted.
        Decision decision;
        /// @dev True once settled.
        bool settled;
    }

    /// @notice One selected client's record in a round.
    struct Participant {
        /// @dev What the client was drawn as.
        Role role;
        /// @dev Proposer: proposed. Voter: committed.
        bool acted;
        /// @dev Voter: revealed.
        bool revealed;
        /// @dev Voter: the commitment.
        bytes32 commitment;
        /// @dev Proposer: its update hash. Voter: its revealed parent hash.
        bytes32 modelHash;
        /// @dev Proposer: its training sample count.
        uint256 sampleCount;
        /// @dev Voter: its revealed ballot (bit i set = accepts proposal i).
        uint256 acceptMask;
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
    /// @notice `voter` committed to a hidden ballot.
    event VoteCommitted(uint256 indexed roundId, address indexed voter, bytes32 commitment);
    /// @notice `voter` revealed its ballot `acceptMask` and its `parentHash`.
    event VoteRevealed(uint256 indexed roundId, address indexed voter, uint256 acceptMask, bytes32 parentHash);
    /// @notice Proposal `index` of `proposer` was settled: `accepts` of `revealed` voters accepted it.
    event ProposalSettled(
        uint256 indexed roundId, address indexed proposer, uint256 index, bool accepted, uint256 accepts, uint256 revealed
    );
    /// @notice `client`'s stake for the round was settled: `slashed` taken, `rewarded` paid (the rest of
    /// its locked stake is unlocked). Voters: `won` = (slashed == 0); proposers: `won` = proposal accepted.
    event ParticipantSettled(
        uint256 indexed roundId, address indexed client, Role role, bool won, uint256 slashed, uint256 rewarded
    );
    /// @notice The parent hash tally of round `roundId`: `parentHash` led with `votes` of `revealed`;
    /// `confirmed` (a strict majority) means it became the recorded global model hash.
    event ParentHashTallied(
        uint256 indexed roundId, bytes32 parentHash, uint256 votes, uint256 revealed, bool confirmed
    );
    /// @notice Round `roundId`'s seed will mix in the hash of block `seedBlock` (seedBlockDelay > 0):
    /// set at deployment (round 1), at the previous round's settlement, or by `reanchorSeedBlock`.
    event SeedBlockAnchored(uint256 indexed roundId, uint256 seedBlock);
    /// @notice Round `roundId` settled; `globalModelHash` is the hash recorded (see RoundInfo).
    event RoundSettled(
        uint256 indexed roundId,
        Decision decision,
        bytes32 globalModelHash,
        uint256 acceptedMask,
        uint256 acceptedCount,
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
    /// @notice A ballot with a bit set at or above `proposalCount` (there is no such proposal).
    error RoundInvalidBallot(uint256 acceptMask, uint256 proposalCount);
    /// @notice A proposal with a zero hash or zero samples.
    error RoundInvalidProposal(bytes32 updateHash, uint256 sampleCount);
    /// @notice A zero commitment.
    error RoundZeroCommitment();
    /// @notice The next round cannot open before block `seedBlock` is mined (now `blockNumber`): wait.
    error RoundSeedBlockNotReached(uint256 seedBlock, uint256 blockNumber);
    /// @notice The hash of block `seedBlock` is no longer readable (more than 256 blocks ago):
    /// call `reanchorSeedBlock`, then open.
    error RoundSeedBlockExpired(uint256 seedBlock, uint256 blockNumber);
    /// @notice `reanchorSeedBlock` while the hash of `seedBlock` is still to come or still readable.
    error RoundSeedBlockNotExpired(uint256 seedBlock, uint256 blockNumber);
    /// @notice `reanchorSeedBlock` on a deployment without a seed block (seedBlockDelay = 0).
    error RoundSeedBlockDisabled();

    // ---------------------------------------------------------------- actions
    /// @notice Open the next round (anyone, once the previous one is settled): draw proposers and
    /// voters with the next seed (`nextSeed`) from the first `nextDrawSize()` positions of the active
    /// list, lock their stakes, then remove those drawn who cannot cover them, and snapshot the active
    /// count for the round after. With seedBlockDelay > 0 it reverts `RoundSeedBlockNotReached` until
    /// the seed block is mined and `RoundSeedBlockExpired` 256 blocks after it. Gas does not grow with
    /// the active set.
    function openRound() external returns (uint256 roundId);

    /// @notice Anyone, with seedBlockDelay > 0, once the next round's seed block is more than 256 blocks
    /// old and the round still unopened: anchor the seed to block `block.number + seedBlockDelay` instead.
    function reanchorSeedBlock() external returns (uint256 seedBlock);

    /// @notice Publish a proposal before the proposal deadline. Selected proposers only, once.
    /// Proposals are indexed 0.. in submission order; ballots refer to them by that index.
    function propose(uint256 roundId, bytes32 updateHash, uint256 sampleCount) external;

    /// @notice Commit `commitment = commitmentFor(roundId, msg.sender, acceptMask, parentHash, salt)`
    /// after the proposal deadline and before the commit deadline. Selected voters only, once.
    function commitVote(uint256 roundId, bytes32 commitment) external;

    /// @notice Reveal the committed ballot after the commit deadline and before the reveal deadline:
    /// bit i of `acceptMask` accepts proposal i (bits >= proposalCount must be 0); `parentHash` is the
    /// global model this round started from; `salt` joins the seed of the next round.
    function revealVote(uint256 roundId, uint256 acceptMask, bytes32 parentHash, bytes32 salt) external;

    /// @notice Settle round `roundId` (anyone, after its reveal deadline): decide each proposal,
    /// reward and slash per proposal, record the confirmed parent hash; with seedBlockDelay > 0,
    /// anchor the next round's seed to block `block.number + seedBlockDelay`.
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
    /// @notice The global model hash recorded so far: the last parent hash a voter majority confirmed
    /// (the initial model until then). It lags one round behind the model the clients hold.
    function globalModelHash() external view returns (bytes32);
    /// @notice The hash of the initial model, fixed at deployment.
    function initialModelHash() external view returns (bytes32);
    /// @notice seed_0 = keccak256(abi.encode(address(this), initialModelHash)), fixed at deployment.
    function initialSeed() external view returns (bytes32);
    /// @notice The seed the next round will be drawn with:
    /// keccak256(abi.encode(seed_r, saltMix_r, r + 1, address(this))) for the latest round r
    /// (seed_0 and a zero mix before the first round); final once round r's reveal phase is over.
    /// With seedBlockDelay > 0, that value mixed with the hash of `nextSeedBlock()`
    /// (RoundMath.anchoredSeed), or zero while it is not known: round r not settled, the seed
    /// block not yet mined (as seen by the block this call runs in), or its hash expired.
    function nextSeed() external view returns (bytes32);
    /// @notice The block whose hash the next round's seed mixes in; 0 with seedBlockDelay = 0 or
    /// while the latest round is not settled.
    function nextSeedBlock() external view returns (uint256);
    /// @notice How many positions of the active list the next round draws from: the active count
    /// right after the latest opening (clients that joined since wait one more round), or the
    /// active count now before round 1 or when that snapshot is below 2 (RoundMath.drawSize).
    function nextDrawSize() external view returns (uint256);
    /// @notice Proposers drawn for round `roundId` (removed ones excluded), in draw order.
    function proposersOf(uint256 roundId) external view returns (address[] memory);
    /// @notice Voters drawn for round `roundId` (removed ones excluded), in draw order.
    function votersOf(uint256 roundId) external view returns (address[] memory);
    /// @notice The proposals submitted in round `roundId`, in submission order (= ballot bit order).
    function proposalsOf(uint256 roundId)
        external
        view
        returns (address[] memory proposers, bytes32[] memory updateHashes, uint256[] memory sampleCounts);
    /// @notice Revealed accept votes per proposal of round `roundId`, in proposal order.
    function proposalAccepts(uint256 roundId) external view returns (uint256[] memory);
    /// @notice Revealed votes for `parentHash` as round `roundId`'s parent model.
    function parentHashVotes(uint256 roundId, bytes32 parentHash) external view returns (uint256);
    /// @notice The commitment a voter must submit:
    /// keccak256(abi.encode(roundId, voter, acceptMask, parentHash, salt)).
    function commitmentFor(uint256 roundId, address voter, uint256 acceptMask, bytes32 parentHash, bytes32 salt)
        external
        pure
        returns (bytes32);
    /// @notice The StakeRegistry.
    function registry() external view returns (address);
    /// @notice The ProposalPool.
    function proposalPool() external view returns (address);
}
