// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../src/interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../src/TeeBridgeConsumer.sol";

/// @title TrivialConsumer
/// @notice Benchmark double: the cheapest useful callback, one 32-byte store to a fresh slot per request.
/// @dev Used by bench/gas.py to compare teebridge with other oracles under the same callback. It keeps no
///      other state: sending a request writes nothing here, fulfilling it writes `results[requestId]`.
contract TrivialConsumer is TeeBridgeConsumer {
    /// @notice The first 32 bytes of each request's result (zero until fulfilled).
    mapping(bytes32 requestId => bytes32 word) public results;

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

    function _onFulfillment(bytes32 requestId, uint8, bytes calldata result) internal override {
        results[requestId] = bytes32(result[:32]);
    }
}
