// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title ITeeBridgeConsumer
/// @notice The callback a Router calls on the requester when a fulfilment is accepted.
interface ITeeBridgeConsumer {
    /// @notice Receive the result of a request.
    /// @dev Called by the Router with exactly the `callbackGasLimit` the request asked for.
    ///      A revert here (or running out of gas) is recorded by the Router's `CallbackFailed` event; it does not
    ///      undo the fulfilment.
    /// @param requestId The id returned by `Router.request`.
    /// @param status 0 for success; any other value is an error status and `result` is abi.encode(string reason).
    /// @param result The job's ABI-encoded output (or the error reason).
    function handleFulfillment(bytes32 requestId, uint8 status, bytes calldata result) external;
}
