// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../src/interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../src/TeeBridgeConsumer.sol";

/// @title LoadConsumer
/// @notice Benchmark double for the throughput benchmark (bench/e2e.py --per-tx): one transaction makes many
///         real requests. Each goes through `Router.request` on its own (its own request id, `Requested` event,
///         commitment and fee accounting) exactly as if it had been sent alone; only the transaction carrying
///         them is shared, so a Python load generator need not sign and broadcast a transaction per request.
/// @dev The callback is TrivialConsumer's: one 32-byte store to a fresh slot per fulfilled request.
contract LoadConsumer is TeeBridgeConsumer {
    /// @notice The first 32 bytes of each request's result (zero until fulfilled).
    mapping(bytes32 requestId => bytes32 word) public results;

    /// @param router_ The Router.
    constructor(IRouter router_) TeeBridgeConsumer(router_) {}

    /// @notice Send one request per input, each with no fee.
    /// @param jobId The job id of every request.
    /// @param inputs The input envelopes, one per request.
    /// @param callbackGasLimit Gas for each callback.
    /// @param ttl Seconds to expiry.
    function sendMany(bytes32 jobId, bytes[] calldata inputs, uint32 callbackGasLimit, uint64 ttl) external {
        for (uint256 i = 0; i < inputs.length; ++i) {
            _sendRequest(jobId, inputs[i], callbackGasLimit, ttl, 0);
        }
    }

    function _onFulfillment(bytes32 requestId, uint8, bytes calldata result) internal override {
        results[requestId] = bytes32(result[:32]);
    }
}
