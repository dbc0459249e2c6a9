// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title ConsistencyProof: RFC 9162 consistency-proof verification on the EVM.
/// @notice Checks that the Merkle tree of `oldSize` leaves with root `oldRoot` is a prefix
/// of the tree of `newSize` leaves with root `newRoot`, following RFC 9162 §2.1.4.2 step
/// by step, with interior nodes hashed as SHA-256(0x01 || left || right) through the
/// SHA-256 precompile (address 0x02). Leaves are never hashed here, so the leaf prefix
/// 0x00 does not appear.
///
/// The cases outside the RFC's precondition `0 < oldSize < newSize` are decided as the
/// Rust ledger decides them (`sworn_ledger::merkle::verify_consistency`): equal sizes need
/// equal roots and an empty proof (and the empty tree's root is SHA-256 of nothing), a
/// proof from the empty tree or to a smaller tree is refused, and so is a proof longer
/// than any valid one. The contract's tests check both implementations agree case by case.
library ConsistencyProof {
    /// @notice The longest consistency proof that can be valid for tree sizes below 2^64:
    /// one element per level of a 64-level tree plus one for the old tree's own subtree.
    /// The bound is reached: the proof from 2^63 - 1 to 2^63 + 1 leaves has 65 elements.
    uint256 internal constant MAX_LENGTH = 65;

    /// @notice SHA-256 of the empty string: RFC 9162's root of the empty tree.
    bytes32 internal constant EMPTY_ROOT = 0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855;

    /// @notice Whether `proof` shows the tree (`oldSize`, `oldRoot`) is a prefix of the tree
    /// (`newSize`, `newRoot`). Never reverts on a bad proof; it answers false. A proof longer
    /// than `MAX_LENGTH` is refused before anything is hashed.
    function verify(uint64 oldSize, uint64 newSize, bytes32 oldRoot, bytes32 newRoot, bytes32[] calldata proof)
        internal
        view
        returns (bool)
    {
        uint256 length = proof.length;
        if (length > MAX_LENGTH || oldSize > newSize) return false;
        if (oldSize == newSize) {
            return length == 0 && oldRoot == newRoot && (oldSize != 0 || oldRoot == EMPTY_ROOT);
        }
        if (oldSize == 0 || length == 0) return false;

        // Step 3: fn and sn, the last leaf's index in each tree. uint256 keeps the shifts
        // free of uint64 cleanup; the values never exceed 2^64 - 2.
        uint256 fn = uint256(oldSize) - 1;
        uint256 sn = uint256(newSize) - 1;
        // Step 2: when the old tree is a complete subtree its root seeds the walk, and the
        // proof (which leaves it out) is consumed from its first element.
        bytes32 fr;
        uint256 next;
        if ((oldSize & fn) == 0) {
            fr = oldRoot;
        } else {
            fr = proof[0];
            next = 1;
        }
        bytes32 sr = fr;
        // Step 4: climb past the levels where the old tree's last leaf is a right child.
        while ((fn & 1) == 1) {
            fn >>= 1;
            sn >>= 1;
        }
        // Step 6.
        for (uint256 i = next; i < length; ++i) {
            if (sn == 0) return false;
            bytes32 c = proof[i];
            if ((fn & 1) == 1 || fn == sn) {
                fr = hashNode(c, fr);
                sr = hashNode(c, sr);
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                sr = hashNode(sr, c);
            }
            fn >>= 1;
            sn >>= 1;
        }
        // Step 7.
        return sn == 0 && fr == oldRoot && sr == newRoot;
    }

    /// @notice RFC 9162's interior node hash, SHA-256(0x01 || left || right), through the
    /// SHA-256 precompile. Uses the free memory past the free memory pointer as scratch
    /// (never allocated, so memory does not grow per node) and scratch slot 0 for the digest.
    function hashNode(bytes32 left, bytes32 right) internal view returns (bytes32 digest) {
        assembly ("memory-safe") {
            let buffer := mload(0x40)
            mstore8(buffer, 0x01)
            mstore(add(buffer, 0x01), left)
            mstore(add(buffer, 0x21), right)
            // The precompile only fails when it runs out of gas; pass that on.
            if iszero(staticcall(gas(), 0x02, buffer, 0x41, 0x00, 0x20)) { revert(0x00, 0x00) }
            digest := mload(0x00)
        }
    }
}
