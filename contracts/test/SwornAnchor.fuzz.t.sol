// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./utils/Test.sol";
import {MerkleTree} from "./utils/MerkleTree.sol";
import {SwornAnchor} from "../src/SwornAnchor.sol";

/// @notice Fuzz tests: random anchor sequences checked against a plain model of the
/// rules, and single rules over random inputs.
contract SwornAnchorFuzzTest is Test {
    SwornAnchor internal registry;

    address internal constant SUBMITTER = address(0x5B);
    address internal constant STRANGER = address(0xBAD);
    // In production a log id is SHA-256 of the origin; the contract treats it as opaque
    // bytes. keccak256 of a literal is folded at compile time, whereas sha256 would be a
    // precompile call at run time, which would consume a pending vm.prank.
    bytes32 internal constant LOG = keccak256("sworn.test/fuzz");
    bytes32 internal constant KEY = keccak256("ed25519 key");
    /// The log's history and another one (see MerkleTree.leaves).
    uint256 internal constant HISTORY = 1;
    uint256 internal constant FORK = 2;

    /// Steps per random sequence: enough to cross many accept/reject boundaries while
    /// keeping 512 runs fast.
    uint256 internal constant STEPS = 40;
    /// Leaves built per history: sizes grow by at most 8 a step.
    uint256 internal constant LEAVES = 8 * STEPS + 20;

    // The model: what the contract should hold after the accepted steps.
    uint64 internal modelLatest;
    mapping(uint64 seq => uint64 size) internal modelSize;
    mapping(uint64 seq => bytes32 root) internal modelRoot;
    mapping(uint64 seq => bytes32 hash) internal modelHash;

    /// One step's `anchor` arguments (built before any prank: building hashes).
    struct Step {
        address caller;
        uint64 seq;
        uint64 size;
        bytes32 root;
        bytes32 checkpointHash;
        bytes32 prevRoot;
        bytes32 prevCheckpointHash;
        bytes32[] proof;
    }

    /// How a step departs from an honest submitter's.
    enum Twist {
        None,
        Fork,
        WrongPrevious,
        FlippedProof
    }

    function setUp() public {
        registry = new SwornAnchor();
        registry.registerLog(LOG, KEY, SUBMITTER);
    }

    function _hash(uint64 seq, uint64 size) internal pure returns (bytes32) {
        return keccak256(abi.encode("checkpoint", seq, size));
    }

    /// The honest anchor of `history`'s tree of `size` on top of the model's latest
    /// anchor, then `twist` applied (`fork` is the other history).
    function _step(
        bytes32[] memory history,
        bytes32[] memory fork,
        address caller,
        uint64 seq,
        uint64 size,
        Twist twist,
        uint256 r
    ) internal view returns (Step memory st) {
        uint64 previous = modelSize[modelLatest];
        bytes32[] memory tree = history;
        st.caller = caller;
        st.seq = seq;
        st.size = size;
        st.root = MerkleTree.root(tree, size);
        st.checkpointHash = _hash(seq, size);
        if (modelLatest != 0) {
            st.prevRoot = modelRoot[modelLatest];
            st.prevCheckpointHash = modelHash[modelLatest];
            if (size >= previous && size != 0) st.proof = MerkleTree.consistencyProof(tree, previous, size);
        }
        if (twist == Twist.Fork) {
            st.root = MerkleTree.root(fork, size);
        } else if (twist == Twist.WrongPrevious) {
            st.prevRoot = keccak256(abi.encode("not the previous root", r));
        } else if (twist == Twist.FlippedProof && st.proof.length > 0) {
            st.proof[r % st.proof.length] ^= bytes32(uint256(1) << (r % 256));
        }
    }

    /// What the rules say `anchor` must do with `st`, given the model.
    function _expected(Step memory st, Twist twist) internal view returns (bytes memory) {
        if (st.caller != SUBMITTER) {
            return abi.encodeWithSelector(SwornAnchor.NotSubmitter.selector, LOG, st.caller);
        }
        uint64 seq = st.seq;
        if (seq != modelLatest + 1) {
            if (seq != 0 && seq <= modelLatest) {
                return abi.encodeWithSelector(SwornAnchor.AlreadyAnchored.selector, LOG, seq);
            }
            return abi.encodeWithSelector(SwornAnchor.SeqNotContiguous.selector, LOG, modelLatest + 1, seq);
        }
        if (st.size == 0) return abi.encodeWithSelector(SwornAnchor.EmptyTree.selector);
        if (modelLatest == 0) {
            if (twist == Twist.WrongPrevious) {
                return abi.encodeWithSelector(SwornAnchor.FirstAnchorHasPrevious.selector, LOG);
            }
            return "";
        }
        uint64 previous = modelSize[modelLatest];
        if (st.size < previous) {
            return abi.encodeWithSelector(SwornAnchor.TreeSizeDecreased.selector, LOG, previous, st.size);
        }
        if (twist == Twist.WrongPrevious) {
            return abi.encodeWithSelector(SwornAnchor.PreviousAnchorMismatch.selector, LOG, modelLatest);
        }
        // A forked root, or a flipped bit in a non-empty proof, breaks the history.
        if (twist == Twist.Fork || (twist == Twist.FlippedProof && st.proof.length > 0)) {
            return abi.encodeWithSelector(
                SwornAnchor.InconsistentHistory.selector, LOG, modelLatest, previous, st.size
            );
        }
        return "";
    }

    function testFuzz_randomAnchorSequenceMatchesModel(uint256 seed) public {
        bytes32[] memory history = MerkleTree.leaves(HISTORY, LEAVES);
        bytes32[] memory fork = MerkleTree.leaves(FORK, LEAVES);
        for (uint256 i = 0; i < STEPS; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            address caller = r % 8 == 0 ? STRANGER : SUBMITTER;
            r >>= 8;
            // Mostly the next seq; otherwise anything near the frontier, zero included.
            uint64 seq = r % 4 != 0 ? modelLatest + 1 : uint64((r >> 2) % (modelLatest + 4));
            r >>= 32;
            // Sizes wander around the previous size, so shrinking, equal and growing
            // trees all occur, plus the occasional empty tree.
            uint64 previous = modelSize[modelLatest];
            int256 delta = int256((r >> 8) % 12) - 3;
            int256 raw = int256(uint256(previous)) + delta;
            // casting is safe: 0 <= raw <= previous + 8, and the model's sizes stay tiny.
            // forge-lint: disable-next-line(unsafe-typecast)
            uint64 size = r % 16 == 0 || raw < 0 ? 0 : uint64(uint256(raw));
            r >>= 16;
            // One step in four departs from the honest history; a fork of the first
            // anchor would be a history of its own, so seq 1 is never forked.
            Twist twist = r % 4 == 0 ? Twist(1 + (r >> 2) % 3) : Twist.None;
            if (twist == Twist.Fork && modelLatest == 0) twist = Twist.None;
            r >>= 8;

            Step memory st = _step(history, fork, caller, seq, size, twist, r);
            bytes memory want = _expected(st, twist);
            vm.prank(caller);
            try registry.anchor(
                LOG, st.seq, st.size, st.root, st.checkpointHash, st.prevRoot, st.prevCheckpointHash, st.proof
            ) {
                assertEq(want.length, 0, "accepted a step the rules reject");
                modelLatest = seq;
                modelSize[seq] = size;
                modelRoot[seq] = st.root;
                modelHash[seq] = st.checkpointHash;
            } catch (bytes memory got) {
                assertEq(keccak256(got), keccak256(want), "rejected with the wrong error");
            }
        }

        (uint64 latestSeq,) = registry.latest(LOG);
        assertEq(latestSeq, modelLatest, "latest seq");
        for (uint64 s = 1; s <= modelLatest; s++) {
            SwornAnchor.Anchor memory a = registry.anchorAt(LOG, s);
            assertEq(a.treeSize, modelSize[s], "stored size");
            assertTrue(
                registry.isAnchored(LOG, s, modelSize[s], modelRoot[s], modelHash[s]),
                "stored root and checkpoint hash"
            );
            if (s > 1) assertTrue(a.treeSize >= modelSize[s - 1], "sizes never decrease");
            // One linear history: every anchored root is the history's root at its size.
            assertEq(modelRoot[s], MerkleTree.root(history, modelSize[s]), "on the history");
        }
    }

    function testFuzz_nonSubmitterIsAlwaysRejected(address caller, uint64 seq, uint64 size) public {
        vm.assume(caller != SUBMITTER);
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.NotSubmitter.selector, LOG, caller));
        vm.prank(caller);
        registry.anchor(LOG, seq, size, bytes32(0), bytes32(0), bytes32(0), bytes32(0), new bytes32[](0));
    }

    function testFuzz_shrinkingTreeIsRejected(uint64 first, uint64 second) public {
        first = uint64(bound(first, 2, type(uint64).max));
        second = uint64(bound(second, 1, first - 1));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, 1, first, bytes32(0), bytes32(0), bytes32(0), bytes32(0), new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.TreeSizeDecreased.selector, LOG, first, second));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, 2, second, bytes32(0), bytes32(0), bytes32(0), bytes32(0), new bytes32[](0));
    }

    function testFuzz_anchoredSeqIsWriteOnce(uint8 count, uint64 target, bytes32 root) public {
        count = uint8(bound(count, 1, 20));
        target = uint64(bound(target, 1, count));
        bytes32[] memory history = MerkleTree.leaves(HISTORY, count);
        for (uint64 s = 1; s <= count; s++) {
            Step memory st = _step(history, history, SUBMITTER, s, s, Twist.None, 0);
            vm.prank(SUBMITTER);
            registry.anchor(
                LOG, s, s, st.root, st.checkpointHash, st.prevRoot, st.prevCheckpointHash, st.proof
            );
            modelLatest = s;
            modelSize[s] = s;
            modelRoot[s] = st.root;
            modelHash[s] = st.checkpointHash;
        }
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.AlreadyAnchored.selector, LOG, target));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, target, type(uint64).max, root, root, root, root, new bytes32[](1));
        assertTrue(
            registry.isAnchored(LOG, target, target, modelRoot[target], modelHash[target]), "unchanged"
        );
    }

    function testFuzz_keyForSeqFollowsRotations(uint256 seed, uint64 query) public {
        query = uint64(bound(query, 1, 1000));
        bytes32[6] memory keys;
        uint64[6] memory froms;
        keys[0] = KEY;
        froms[0] = 1;
        uint256 n = 1;
        uint64 from = 1;
        for (uint256 i = 1; i < 6; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            // casting to 'uint64' is safe because 1 + r % 200 <= 200.
            // forge-lint: disable-next-line(unsafe-typecast)
            from += uint64(1 + r % 200);
            keys[i] = keccak256(abi.encode("key", i, seed));
            froms[i] = from;
            registry.rotateKey(LOG, keys[i], from);
            n++;
        }
        // The model: the last key whose first seq is at or before the query.
        uint256 want = 0;
        for (uint256 i = 0; i < n; i++) {
            if (froms[i] <= query) want = i;
        }
        (bytes32 key, uint64 keyFrom) = registry.keyForSeq(LOG, query);
        assertEq(key, keys[want], "key");
        assertEq(keyFrom, froms[want], "fromSeq");
    }
}
