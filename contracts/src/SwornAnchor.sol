// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsistencyProof} from "./ConsistencyProof.sol";

/// @title SwornAnchor: a write-once registry of transparency-log checkpoints.
/// @notice Each Sworn instance keeps one append-only RFC 9162 Merkle log, identified by
/// `logId = SHA-256(origin)`. The log's submitter anchors signed checkpoints here under
/// contiguous sequence numbers (1, 2, 3, ...). An anchor is never overwritten.
///
/// What the contract guarantees: every anchored checkpoint of a log lies on one linear
/// history, by construction. Each anchor after the first names the anchor before it (its
/// root and checkpoint hash, checked against storage) and carries an RFC 9162 consistency
/// proof from that anchor's tree to its own, verified here with the SHA-256 precompile
/// (see `ConsistencyProof`). So anchor `seq` extends anchor `seq - 1`, which extends
/// anchor `seq - 2`, and so on: an equal tree size needs an equal root, a smaller one is
/// refused, and once a checkpoint is anchored in a finalized block the operator can no
/// longer anchor a history that contradicts it (a split view), for that size or any other.
/// What it does not check is the Ed25519 signature: the contract binds roots and sizes as
/// submitted, and a verifier checks the checkpoint note whose hash is anchored.
///
/// The log's Ed25519 public keys are recorded with the first seq each applies to, so a
/// verifier can take the key that signed checkpoint `seq` from the chain. Rotations only
/// apply forward: a key can never be re-assigned to seqs that are already anchored.
///
/// `checkpointHash` is SHA-256 of the full signed checkpoint note text (C2SP signed-note:
/// body and signature lines); `root` and `treeSize` are the checkpoint's own values, kept
/// apart so no one can claim another size for the same root.
///
/// Storage holds what the rules need and what a verifier checks, in two fresh slots per
/// anchor (the gas target is 120k per anchor transaction at 2^20 entries, proof included):
/// the tree size, block and time in one packed word, and
/// `keccak256(abi.encode(root, checkpointHash))` in the other. The `Anchored` event
/// carries the root and checkpoint hash in the clear; `isAnchored` checks a (size, root,
/// hash) triple against storage without trusting any event, and the next anchor's
/// `prevRoot`/`prevCheckpointHash` are checked against the same commitment.
contract SwornAnchor {
    /// @notice A registered log. Packed in one slot (20 + 8 + 4 bytes) for `anchor`;
    /// `admin` lives in the next one because `anchor` never reads it.
    struct Log {
        address submitter;
        uint64 latestSeq;
        uint32 keyCount;
        address admin;
    }

    /// @notice One anchored checkpoint: two slots. `commitment` binds the root and the
    /// checkpoint hash (see `commitmentOf`); the rest is packed in one word.
    struct Anchor {
        bytes32 commitment;
        uint64 treeSize;
        uint64 blockNumber;
        uint64 timestamp;
    }

    /// @notice A log key and the first seq whose checkpoint it signs.
    struct KeyEntry {
        bytes32 publicKey;
        uint64 fromSeq;
    }

    /// @notice The most elements a consistency proof may have; longer ones are refused
    /// before anything is hashed. No valid proof between tree sizes below 2^64 is longer.
    uint256 public constant MAX_PROOF_LENGTH = ConsistencyProof.MAX_LENGTH;

    /// @notice The account allowed to register logs (the deployer).
    address public immutable owner;

    mapping(bytes32 logId => Log) private _logs;
    mapping(bytes32 logId => mapping(uint64 seq => Anchor)) private _anchors;
    mapping(bytes32 logId => KeyEntry[]) private _keys;

    /// @notice A log was registered with its first key (which applies from seq 1).
    event LogRegistered(bytes32 indexed logId, address indexed admin, address indexed submitter, bytes32 publicKey);
    /// @notice A key was recorded for `logId`, applying to checkpoints from `fromSeq` on.
    event KeyRotated(bytes32 indexed logId, uint64 indexed fromSeq, bytes32 publicKey);
    /// @notice The account allowed to anchor for `logId` changed.
    event SubmitterChanged(bytes32 indexed logId, address indexed previous, address indexed current);
    /// @notice Checkpoint `seq` of `logId` was anchored.
    event Anchored(
        bytes32 indexed logId, uint64 indexed seq, uint64 treeSize, bytes32 root, bytes32 checkpointHash
    );

    /// @notice Only the registry owner may register logs.
    error NotOwner(address caller);
    /// @notice Only the log's admin may rotate its key or change its submitter.
    error NotLogAdmin(bytes32 logId, address caller);
    /// @notice Only the log's submitter may anchor its checkpoints.
    error NotSubmitter(bytes32 logId, address caller);
    /// @notice No log is registered under this id.
    error UnknownLog(bytes32 logId);
    /// @notice A log is already registered under this id.
    error LogAlreadyRegistered(bytes32 logId);
    /// @notice The zero address cannot submit.
    error ZeroSubmitter();
    /// @notice The all-zero public key is not a key.
    error ZeroPublicKey();
    /// @notice A new key must apply from a seq after every anchored seq and after the
    /// previous key's first seq; `minimum` is the smallest acceptable `fromSeq`.
    error KeyRotationNotForward(bytes32 logId, uint64 fromSeq, uint64 minimum);
    /// @notice This seq is already anchored; anchors are write-once.
    error AlreadyAnchored(bytes32 logId, uint64 seq);
    /// @notice Seqs are contiguous: the next anchor must carry `expected`.
    error SeqNotContiguous(bytes32 logId, uint64 expected, uint64 got);
    /// @notice A log only grows: the tree size cannot go below the previous anchor's.
    error TreeSizeDecreased(bytes32 logId, uint64 previous, uint64 got);
    /// @notice An empty tree has nothing to anchor.
    error EmptyTree();
    /// @notice Seq 1 has no previous anchor: its `prevRoot` and `prevCheckpointHash` must be
    /// zero and its consistency proof empty.
    error FirstAnchorHasPrevious(bytes32 logId);
    /// @notice `prevRoot` and `prevCheckpointHash` are not what is anchored at
    /// `previousSeq` (the seq before the one being anchored).
    error PreviousAnchorMismatch(bytes32 logId, uint64 previousSeq);
    /// @notice The consistency proof does not show the tree anchored at `previousSeq`
    /// (`previousSize` leaves) to be a prefix of the new tree (`treeSize` leaves): the new
    /// checkpoint is not on the log's anchored history.
    error InconsistentHistory(bytes32 logId, uint64 previousSeq, uint64 previousSize, uint64 treeSize);
    /// @notice A consistency proof has `length` elements, more than any valid one (`max`).
    error ProofTooLong(uint256 length, uint256 max);
    /// @notice Nothing is anchored at this seq.
    error NotAnchored(bytes32 logId, uint64 seq);
    /// @notice Seq 0 does not exist; seqs start at 1.
    error SeqZero();
    /// @notice `logId` has `count` key entries; `index` is past them.
    error KeyIndexOutOfRange(bytes32 logId, uint256 index, uint256 count);

    constructor() {
        owner = msg.sender;
    }

    /// @notice Registers `logId` with its first Ed25519 key and submitter; the caller
    /// (the owner) becomes the log's admin.
    function registerLog(bytes32 logId, bytes32 publicKey, address submitter) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (_logs[logId].admin != address(0)) revert LogAlreadyRegistered(logId);
        if (submitter == address(0)) revert ZeroSubmitter();
        if (publicKey == bytes32(0)) revert ZeroPublicKey();
        _logs[logId] = Log({submitter: submitter, latestSeq: 0, keyCount: 1, admin: msg.sender});
        _keys[logId].push(KeyEntry({publicKey: publicKey, fromSeq: 1}));
        emit LogRegistered(logId, msg.sender, submitter, publicKey);
        emit KeyRotated(logId, 1, publicKey);
    }

    /// @notice Records `publicKey` as the key of `logId` from `fromSeq` on. `fromSeq`
    /// must be past every anchored seq and past the current key's first seq.
    function rotateKey(bytes32 logId, bytes32 publicKey, uint64 fromSeq) external {
        Log storage log = _adminLog(logId);
        if (publicKey == bytes32(0)) revert ZeroPublicKey();
        KeyEntry[] storage keys = _keys[logId];
        uint64 afterAnchored = log.latestSeq + 1;
        uint64 afterCurrent = keys[keys.length - 1].fromSeq + 1;
        uint64 minimum = afterAnchored > afterCurrent ? afterAnchored : afterCurrent;
        if (fromSeq < minimum) revert KeyRotationNotForward(logId, fromSeq, minimum);
        keys.push(KeyEntry({publicKey: publicKey, fromSeq: fromSeq}));
        log.keyCount += 1;
        emit KeyRotated(logId, fromSeq, publicKey);
    }

    /// @notice Changes the account allowed to anchor for `logId`.
    function setSubmitter(bytes32 logId, address submitter) external {
        Log storage log = _adminLog(logId);
        if (submitter == address(0)) revert ZeroSubmitter();
        address previous = log.submitter;
        log.submitter = submitter;
        emit SubmitterChanged(logId, previous, submitter);
    }

    /// @notice Anchors checkpoint `seq` of `logId`: write-once, seq contiguous from 1, only
    /// by the log's submitter, and only as an extension of the anchor at `seq - 1`.
    /// @param logId SHA-256 of the log's origin.
    /// @param seq The next seq: 1 for the first anchor, then the latest seq plus one.
    /// @param treeSize The checkpoint's tree size (not zero, not below the previous anchor's).
    /// @param root The checkpoint's RFC 9162 root.
    /// @param checkpointHash SHA-256 of the complete signed checkpoint note.
    /// @param prevRoot The root anchored at `seq - 1`; zero for seq 1.
    /// @param prevCheckpointHash The checkpoint hash anchored at `seq - 1`; zero for seq 1.
    /// @param consistency The RFC 9162 consistency proof from the tree anchored at `seq - 1`
    /// to this one (empty for seq 1, and for an equal size, which also needs an equal root).
    function anchor(
        bytes32 logId,
        uint64 seq,
        uint64 treeSize,
        bytes32 root,
        bytes32 checkpointHash,
        bytes32 prevRoot,
        bytes32 prevCheckpointHash,
        bytes32[] calldata consistency
    ) external {
        Log storage log = _logs[logId];
        address submitter = log.submitter;
        if (submitter == address(0)) revert UnknownLog(logId);
        if (msg.sender != submitter) revert NotSubmitter(logId, msg.sender);
        uint64 latestSeq = log.latestSeq;
        // `latestSeq + 1` overflows only after 2^64 - 1 anchors; checked arithmetic would
        // then revert, which is the right answer, so leave the check on.
        uint64 expected = latestSeq + 1;
        if (seq != expected) {
            if (seq != 0 && seq <= latestSeq) revert AlreadyAnchored(logId, seq);
            revert SeqNotContiguous(logId, expected, seq);
        }
        if (treeSize == 0) revert EmptyTree();
        if (latestSeq == 0) {
            if (prevRoot != bytes32(0) || prevCheckpointHash != bytes32(0) || consistency.length != 0) {
                revert FirstAnchorHasPrevious(logId);
            }
        } else {
            Anchor storage previous = _anchors[logId][latestSeq];
            uint64 previousSize = previous.treeSize;
            if (treeSize < previousSize) revert TreeSizeDecreased(logId, previousSize, treeSize);
            if (commitmentOf(prevRoot, prevCheckpointHash) != previous.commitment) {
                revert PreviousAnchorMismatch(logId, latestSeq);
            }
            if (consistency.length > MAX_PROOF_LENGTH) revert ProofTooLong(consistency.length, MAX_PROOF_LENGTH);
            if (!ConsistencyProof.verify(previousSize, treeSize, prevRoot, root, consistency)) {
                revert InconsistentHistory(logId, latestSeq, previousSize, treeSize);
            }
        }
        log.latestSeq = seq;
        _anchors[logId][seq] = Anchor({
            commitment: commitmentOf(root, checkpointHash),
            treeSize: treeSize,
            blockNumber: uint64(block.number),
            timestamp: uint64(block.timestamp)
        });
        emit Anchored(logId, seq, treeSize, root, checkpointHash);
    }

    /// @notice The storage commitment of an anchor's root and checkpoint hash.
    function commitmentOf(bytes32 root, bytes32 checkpointHash) public pure returns (bytes32) {
        return keccak256(abi.encode(root, checkpointHash));
    }

    /// @notice Whether checkpoint `seq` of `logId` is anchored with exactly this tree
    /// size, root and checkpoint hash.
    function isAnchored(bytes32 logId, uint64 seq, uint64 treeSize, bytes32 root, bytes32 checkpointHash)
        external
        view
        returns (bool)
    {
        _knownLog(logId);
        Anchor storage a = _anchors[logId][seq];
        return a.treeSize != 0 && a.treeSize == treeSize && a.commitment == commitmentOf(root, checkpointHash);
    }

    /// @notice The registration of `logId`; reverts `UnknownLog` if there is none.
    function logInfo(bytes32 logId)
        external
        view
        returns (address admin, address submitter, uint64 latestSeq, uint32 keyCount)
    {
        Log storage log = _knownLog(logId);
        return (log.admin, log.submitter, log.latestSeq, log.keyCount);
    }

    /// @notice The anchor at `seq`; reverts `NotAnchored` if there is none.
    function anchorAt(bytes32 logId, uint64 seq) external view returns (Anchor memory) {
        _knownLog(logId);
        Anchor memory a = _anchors[logId][seq];
        if (a.treeSize == 0) revert NotAnchored(logId, seq);
        return a;
    }

    /// @notice The newest anchor of `logId`; `seq` is 0 (and the anchor empty) if none yet.
    function latest(bytes32 logId) external view returns (uint64 seq, Anchor memory a) {
        seq = _knownLog(logId).latestSeq;
        a = _anchors[logId][seq];
    }

    /// @notice The key that signs checkpoint `seq` of `logId`, and the seq it applies from.
    function keyForSeq(bytes32 logId, uint64 seq) external view returns (bytes32 publicKey, uint64 fromSeq) {
        _knownLog(logId);
        if (seq == 0) revert SeqZero();
        KeyEntry[] storage keys = _keys[logId];
        // Rotations are rare; the newest keys are the likely answer, so search backwards.
        for (uint256 i = keys.length; i > 0; i--) {
            KeyEntry storage k = keys[i - 1];
            if (k.fromSeq <= seq) return (k.publicKey, k.fromSeq);
        }
        // Unreachable: the first key applies from seq 1.
        revert SeqZero();
    }

    /// @notice Key entry `index` (0 = the key given at registration) of `logId`.
    function keyAt(bytes32 logId, uint256 index) external view returns (KeyEntry memory) {
        _knownLog(logId);
        KeyEntry[] storage keys = _keys[logId];
        if (index >= keys.length) revert KeyIndexOutOfRange(logId, index, keys.length);
        return keys[index];
    }

    function _knownLog(bytes32 logId) private view returns (Log storage log) {
        log = _logs[logId];
        if (log.admin == address(0)) revert UnknownLog(logId);
    }

    function _adminLog(bytes32 logId) private view returns (Log storage log) {
        log = _knownLog(logId);
        if (msg.sender != log.admin) revert NotLogAdmin(logId, msg.sender);
    }
}
