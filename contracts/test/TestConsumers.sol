// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../src/interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../src/TeeBridgeConsumer.sol";
import {TeeBridgeRequests} from "../src/TeeBridgeRequests.sol";

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

/// @title RequestsHarness
/// @notice Test double: exposes the TeeBridgeRequests library so tests compare it with the Python encoder.
contract RequestsHarness {
    /// @notice See {TeeBridgeRequests.jobId}.
    /// @param nameAtVersion e.g. "echo@1".
    /// @return The job id.
    function jobId(string calldata nameAtVersion) external pure returns (bytes32) {
        return TeeBridgeRequests.jobId(nameAtVersion);
    }

    /// @notice See {TeeBridgeRequests.secretSetId}.
    /// @param chainId The chain.
    /// @param owner The set's owner.
    /// @param job The job id.
    /// @param name The set's name.
    /// @return The secret set id.
    function secretSetId(uint256 chainId, address owner, bytes32 job, string calldata name)
        external
        pure
        returns (bytes32)
    {
        return TeeBridgeRequests.secretSetId(chainId, owner, job, name);
    }

    /// @notice See {TeeBridgeRequests.plain}.
    /// @param payload The job input.
    /// @return The input.
    function plain(bytes calldata payload) external pure returns (bytes memory) {
        return TeeBridgeRequests.plain(payload);
    }

    /// @notice See {TeeBridgeRequests.withSecretSet}.
    /// @param id The secret set id.
    /// @param body The body.
    /// @return The input.
    function withSecretSet(bytes32 id, bytes calldata body) external pure returns (bytes memory) {
        return TeeBridgeRequests.withSecretSet(id, body);
    }

    /// @notice See {TeeBridgeRequests.withOptions}.
    /// @param id The secret set id or zero.
    /// @param suite The result key's suite.
    /// @param resultKey The result key.
    /// @param body The body.
    /// @return The input.
    function withOptions(bytes32 id, uint8 suite, bytes calldata resultKey, bytes calldata body)
        external
        pure
        returns (bytes memory)
    {
        return TeeBridgeRequests.withOptions(id, suite, resultKey, body);
    }
}
