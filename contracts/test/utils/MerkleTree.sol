// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice RFC 9162 Merkle trees in memory, for tests: leaves, the Merkle Tree Hash
/// (§2.1.1) and consistency proofs (§2.1.4.1), written from the RFC's recursive
/// definitions. Deliberately independent of `ConsistencyProof` (which only verifies) and
/// of the Rust ledger's iterative prover, so each checks the others.
///
/// Every hash here is a SHA-256 precompile call: compute trees and proofs *before*
/// `vm.prank` or `vm.expectRevert`, which the next call (a precompile's included) consumes.
library MerkleTree {
    /// @notice RFC 9162 leaf hash: SHA-256(0x00 || data).
    function leafHash(bytes memory data) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), data));
    }

    /// @notice RFC 9162 interior node hash: SHA-256(0x01 || left || right).
    function nodeHash(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }

    /// @notice `count` leaf hashes of a history named by `seed`: leaf i is the leaf hash of
    /// abi.encode(seed, i), so two seeds give two histories that share no leaf.
    function leaves(uint256 seed, uint256 count) internal pure returns (bytes32[] memory out) {
        out = new bytes32[](count);
        for (uint256 i = 0; i < count; i++) {
            out[i] = leafHash(abi.encode(seed, i));
        }
    }

    /// @notice The largest power of two strictly below `n` (n >= 2).
    function largestPow2Below(uint256 n) internal pure returns (uint256 k) {
        k = 1;
        while ((k << 1) < n) k <<= 1;
    }

    /// @notice MTH of the first `size` leaves.
    function root(bytes32[] memory tree, uint256 size) internal pure returns (bytes32) {
        return mth(tree, 0, size);
    }

    /// @notice MTH(D[lo:hi]), by the RFC's recursion.
    function mth(bytes32[] memory tree, uint256 lo, uint256 hi) internal pure returns (bytes32) {
        uint256 n = hi - lo;
        if (n == 0) return sha256("");
        if (n == 1) return tree[lo];
        uint256 k = largestPow2Below(n);
        return nodeHash(mth(tree, lo, lo + k), mth(tree, lo + k, hi));
    }

    /// @notice PROOF(m, D[0:n]): the consistency proof from the first `oldSize` leaves to
    /// the first `newSize` (empty for equal sizes).
    function consistencyProof(bytes32[] memory tree, uint256 oldSize, uint256 newSize)
        internal
        pure
        returns (bytes32[] memory proof)
    {
        require(0 < oldSize && oldSize <= newSize && newSize <= tree.length, "MerkleTree: bad sizes");
        proof = new bytes32[](66);
        uint256 length = oldSize == newSize ? 0 : _subproof(tree, oldSize, 0, newSize, true, proof, 0);
        // Shrink the array in place to the elements written.
        assembly ("memory-safe") {
            mstore(proof, length)
        }
    }

    /// @dev SUBPROOF(m, D[lo:hi], b), appending to `proof` from `length`; returns the new
    /// length. Elements come out in the RFC's order: the deeper subproof first.
    function _subproof(
        bytes32[] memory tree,
        uint256 m,
        uint256 lo,
        uint256 hi,
        bool completeOld,
        bytes32[] memory proof,
        uint256 length
    ) private pure returns (uint256) {
        uint256 n = hi - lo;
        if (m == n) {
            if (!completeOld) proof[length++] = mth(tree, lo, hi);
            return length;
        }
        uint256 k = largestPow2Below(n);
        if (m <= k) {
            length = _subproof(tree, m, lo, lo + k, completeOld, proof, length);
            proof[length++] = mth(tree, lo + k, hi);
        } else {
            length = _subproof(tree, m - k, lo + k, hi, false, proof, length);
            proof[length++] = mth(tree, lo, lo + k);
        }
        return length;
    }
}
