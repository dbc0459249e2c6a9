// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./utils/Test.sol";
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

    /// Steps per random sequence: enough to cross many accept/reject boundaries while
    /// keeping 512 runs fast.
    uint256 internal constant STEPS = 40;

    // The model: what the contract should hold after the accepted steps.
    uint64 internal modelLatest;
    mapping(uint64 seq => uint64 size) internal modelSize;

    function setUp() public {
        registry = new SwornAnchor();
        registry.registerLog(LOG, KEY, SUBMITTER);
    }

    function _root(uint64 seq, uint64 size) internal pure returns (bytes32) {
        return keccak256(abi.encode("root", seq, size));
    }

    function _hash(uint64 seq, uint64 size) internal pure returns (bytes32) {
        return keccak256(abi.encode("checkpoint", seq, size));
    }

    /// What the rules say `anchor(seq, size)` by `caller` must do, given the model.
    function _expected(address caller, uint64 seq, uint64 size) internal view returns (bytes memory) {
        if (caller != SUBMITTER) return abi.encodeWithSelector(SwornAnchor.NotSubmitter.selector, LOG, caller);
        if (seq != modelLatest + 1) {
            if (seq != 0 && seq <= modelLatest) {
                return abi.encodeWithSelector(SwornAnchor.AlreadyAnchored.selector, LOG, seq);
            }
            return abi.encodeWithSelector(SwornAnchor.SeqNotContiguous.selector, LOG, modelLatest + 1, seq);
        }
        if (size == 0) return abi.encodeWithSelector(SwornAnchor.EmptyTree.selector);
        uint64 previous = modelSize[modelLatest];
        if (modelLatest != 0 && size < previous) {
            return abi.encodeWithSelector(SwornAnchor.TreeSizeDecreased.selector, LOG, previous, size);
        }
        return "";
    }

    function testFuzz_randomAnchorSequenceMatchesModel(uint256 seed) public {
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

            bytes memory want = _expected(caller, seq, size);
            vm.prank(caller);
            try registry.anchor(LOG, seq, size, _root(seq, size), _hash(seq, size)) {
                assertEq(want.length, 0, "accepted a step the rules reject");
                modelLatest = seq;
                modelSize[seq] = size;
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
                registry.isAnchored(LOG, s, modelSize[s], _root(s, modelSize[s]), _hash(s, modelSize[s])),
                "stored root and checkpoint hash"
            );
            if (s > 1) assertTrue(a.treeSize >= modelSize[s - 1], "sizes never decrease");
        }
    }

    function testFuzz_nonSubmitterIsAlwaysRejected(address caller, uint64 seq, uint64 size) public {
        vm.assume(caller != SUBMITTER);
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.NotSubmitter.selector, LOG, caller));
        vm.prank(caller);
        registry.anchor(LOG, seq, size, bytes32(0), bytes32(0));
    }

    function testFuzz_shrinkingTreeIsRejected(uint64 first, uint64 second) public {
        first = uint64(bound(first, 2, type(uint64).max));
        second = uint64(bound(second, 1, first - 1));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, 1, first, bytes32(0), bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.TreeSizeDecreased.selector, LOG, first, second));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, 2, second, bytes32(0), bytes32(0));
    }

    function testFuzz_anchoredSeqIsWriteOnce(uint8 count, uint64 target, bytes32 root) public {
        count = uint8(bound(count, 1, 20));
        target = uint64(bound(target, 1, count));
        for (uint64 s = 1; s <= count; s++) {
            vm.prank(SUBMITTER);
            registry.anchor(LOG, s, s, _root(s, s), _hash(s, s));
        }
        vm.expectRevert(abi.encodeWithSelector(SwornAnchor.AlreadyAnchored.selector, LOG, target));
        vm.prank(SUBMITTER);
        registry.anchor(LOG, target, type(uint64).max, root, root);
        assertTrue(registry.isAnchored(LOG, target, target, _root(target, target), _hash(target, target)), "unchanged");
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
