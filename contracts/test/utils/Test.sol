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
    // Reading the differential vectors (contracts/test/data/, readable per foundry.toml's
    // fs_permissions); paths are relative to contracts/.
    function readFile(string calldata path) external view returns (string memory data);
    function parseJsonUint(string calldata json, string calldata key) external pure returns (uint256);
    function parseJsonBool(string calldata json, string calldata key) external pure returns (bool);
    function parseJsonBytes32(string calldata json, string calldata key) external pure returns (bytes32);
    function parseJsonBytes32Array(string calldata json, string calldata key)
        external
        pure
        returns (bytes32[] memory);
    function parseJsonString(string calldata json, string calldata key) external pure returns (string memory);
    function toString(uint256 value) external pure returns (string memory);
    // Measuring an anchor as its own transaction would cost it: `cool` makes an account's
    // storage cold again, `lastCallGas` is what the last call's frame used.
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function cool(address target) external;
    function lastCallGas() external view returns (Gas memory gas);
}

/// @notice A minimal test base: the cheatcode handle, bounded fuzz inputs and assertions
/// that revert with both values, which forge reports as the test's failure reason.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    /// Forge prints calls to this address as console output (`-vv` and up).
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

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

    /// @dev Prints `label: value` in forge's output. The console has no code, so this is a
    /// low-level call; it returns nothing, and printing is best effort. Like any call, it
    /// would consume a pending `vm.prank` or `vm.expectRevert`: log after the call under test.
    function log(string memory label, uint256 value) internal view {
        (bool printed,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        if (!printed) return;
    }

    function assertEq(bool left, bool right, string memory what) internal pure {
        if (left != right) revert AssertionFailed(what, bytes32(uint256(left ? 1 : 0)), bytes32(uint256(right ? 1 : 0)));
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
