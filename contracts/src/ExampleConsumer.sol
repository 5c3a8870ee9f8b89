// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "./interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "./TeeBridgeConsumer.sol";

/// @title ExampleConsumer
/// @notice A minimal consumer: forwards any request to the Router and keeps the last answer per request.
/// @dev The demo uses it for a confidential credit score: the input is HPKE-encrypted off-chain, so the
///      applicant's figures never appear on-chain; only the score comes back.
contract ExampleConsumer is TeeBridgeConsumer {
    struct Answer {
        bool received;
        uint8 status;
        bytes result;
    }

    /// @notice Answers received, by request id.
    mapping(bytes32 requestId => Answer) public answers;
    /// @notice The last request this contract sent.
    bytes32 public lastRequestId;

    event RequestSent(bytes32 indexed requestId, bytes32 indexed jobId);
    event AnswerReceived(bytes32 indexed requestId, uint8 status, bytes result);

    /// @param router_ The teebridge Router.
    constructor(IRouter router_) TeeBridgeConsumer(router_) {}

    /// @notice Send a request; msg.value is the fee.
    /// @param jobId The job id.
    /// @param input The input envelope (plain or encrypted).
    /// @param callbackGasLimit Gas for the callback.
    /// @param ttl Seconds until the request may be cancelled.
    /// @return requestId The request id.
    function send(bytes32 jobId, bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32 requestId)
    {
        requestId = _sendRequest(jobId, input, callbackGasLimit, ttl, msg.value);
        lastRequestId = requestId;
        emit RequestSent(requestId, jobId);
    }

    /// @notice The stored answer for a request.
    /// @param requestId The request id.
    /// @return received Whether an answer arrived.
    /// @return status Its status code.
    /// @return result Its result bytes.
    function answerOf(bytes32 requestId) external view returns (bool received, uint8 status, bytes memory result) {
        Answer storage a = answers[requestId];
        return (a.received, a.status, a.result);
    }

    function _onFulfillment(bytes32 requestId, uint8 status, bytes calldata result) internal override {
        answers[requestId] = Answer({received: true, status: status, result: result});
        emit AnswerReceived(requestId, status, result);
    }
}
