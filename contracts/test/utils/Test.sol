// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice The few forge cheatcodes SwornAnchor's tests use. Forge serves them at a fixed
/// address: address(uint160(uint256(keccak256("hevm cheat code")))).
interface Vm {
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter)
        external;
    function assume(bool condition) external pure;
    function roll(uint256 blockNumber) external;
    function warp(uint256 timestamp) external;
    function addr(uint256 privateKey) external pure returns (address);
}

/// @notice A minimal test base: the cheatcode handle, bounded fuzz inputs and assertions
/// that revert with both values, which forge reports as the test's failure reason.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    error AssertionFailed(string what, bytes32 left, bytes32 right);

    function assertEq(uint256 left, uint256 right, string memory what) internal pure {
        if (left != right) revert AssertionFailed(what, bytes32(left), bytes32(right));
    }

    function assertEq(bytes32 left, bytes32 right, string memory what) internal pure {
        if (left != right) revert AssertionFailed(what, left, right);
    }

    function assertEq(address left, address right, string memory what) internal pure {
        if (left != right) {
            revert AssertionFailed(what, bytes32(uint256(uint160(left))), bytes32(uint256(uint160(right))));
        }
    }

    function assertTrue(bool condition, string memory what) internal pure {
        if (!condition) revert AssertionFailed(what, bytes32(uint256(1)), bytes32(0));
    }

    /// @dev Maps any `x` into [min, max] uniformly enough for fuzzing, keeping small
    /// inputs unchanged so shrunk counterexamples stay readable.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 span = max - min;
        if (span == type(uint256).max) return x;
        return min + (x % (span + 1));
    }
}
