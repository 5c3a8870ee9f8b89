// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IRouter
/// @notice The part of the Router a consumer contract calls.
interface IRouter {
    /// @notice Ask for a job to be run on `input`; pay the fee as msg.value.
    /// @param jobId keccak256("name@version") of the job.
    /// @param input The job input envelope (docs/protocol.md, "Input envelope").
    /// @param callbackGasLimit Gas the Router forwards to the callback, at most `maxCallbackGasLimit`.
    /// @param ttl Seconds until the request expires and can be cancelled.
    /// @return requestId The request id.
    function request(bytes32 jobId, bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32 requestId);
}
