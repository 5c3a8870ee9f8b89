// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../src/interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../src/TeeBridgeConsumer.sol";

/// @title RevertingConsumer
/// @notice Test double: its callback always reverts.
contract RevertingConsumer is TeeBridgeConsumer {
    error Nope();

    /// @param router_ The Router.
    constructor(IRouter router_) TeeBridgeConsumer(router_) {}

    /// @notice Send a request; msg.value is the fee.
    /// @param jobId The job id.
    /// @param input The input envelope.
    /// @param callbackGasLimit Gas for the callback.
    /// @param ttl Seconds to expiry.
    /// @return The request id.
    function send(bytes32 jobId, bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32)
    {
        return _sendRequest(jobId, input, callbackGasLimit, ttl, msg.value);
    }

    function _onFulfillment(bytes32, uint8, bytes calldata) internal pure override {
        revert Nope();
    }
}

/// @title GasBurningConsumer
/// @notice Test double: its callback burns every unit of gas it is given.
contract GasBurningConsumer is TeeBridgeConsumer {
    /// @param router_ The Router.
    constructor(IRouter router_) TeeBridgeConsumer(router_) {}

    /// @notice Send a request; msg.value is the fee.
    /// @param jobId The job id.
    /// @param input The input envelope.
    /// @param callbackGasLimit Gas for the callback.
    /// @param ttl Seconds to expiry.
    /// @return The request id.
    function send(bytes32 jobId, bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32)
    {
        return _sendRequest(jobId, input, callbackGasLimit, ttl, msg.value);
    }

    function _onFulfillment(bytes32, uint8, bytes calldata) internal pure override {
        while (true) {}
    }
}
