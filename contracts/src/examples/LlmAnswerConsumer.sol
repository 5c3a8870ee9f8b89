// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../TeeBridgeConsumer.sol";

/// @title LlmAnswerConsumer
/// @notice Example: asks `llm.chat@1` (an OpenAI-compatible model, its API key sealed in the enclave) and
///         records the hash of each answer, emitting the answer with what it commits to.
/// @dev Only the owner may ask: the job owner's secret set lists this contract as a requester, so whoever
///      can make it send a request can spend (and, with a chosen endpoint, leak) the API key. Results too
///      large for the chain arrive as status 9 (RESULT_OFFCHAIN) with their hash and length.
contract LlmAnswerConsumer is TeeBridgeConsumer {
    /// @notice `keccak256("llm.chat@1")`.
    bytes32 public constant LLM_CHAT = keccak256("llm.chat@1");
    uint8 private constant _STATUS_OK = 0;
    uint8 private constant _STATUS_RESULT_OFFCHAIN = 9;

    /// @notice The account allowed to ask.
    address public immutable owner;
    /// @notice Per request: keccak256 of the answer text (OK) or of the whole off-chain result (RESULT_OFFCHAIN).
    mapping(bytes32 requestId => bytes32 answerHash) public answerHashes;

    error NotOwner(address caller);

    /// @notice A question was sent.
    event Asked(bytes32 indexed requestId);
    /// @notice The model answered; every field is covered by the enclave's signature.
    event Answered(
        bytes32 indexed requestId,
        bytes32 endpointHash,
        string model,
        bytes32 promptHash,
        bytes32 responseHash,
        string response
    );
    /// @notice The answer was too large for the chain: its hash and length; the bytes come from a relayer.
    event AnsweredOffchain(bytes32 indexed requestId, bytes32 resultHash, uint256 length);
    /// @notice The job did not answer; `status` says why (docs/protocol.md, section 5).
    event Failed(bytes32 indexed requestId, uint8 status);

    /// @param router_ The teebridge Router.
    /// @param owner_ The account allowed to ask.
    constructor(IRouter router_, address owner_) TeeBridgeConsumer(router_) {
        owner = owner_;
    }

    /// @notice Ask the model. Build `input` off-chain (the SDK's `encrypt_input` or `plain_input`) with the
    ///         owner's secret set id, so the prompt can stay encrypted.
    /// @param input The `llm.chat@1` input envelope.
    /// @param callbackGasLimit Gas for the callback (an answer of n bytes needs about 700 n for the event).
    /// @param ttl Seconds until the request may be cancelled.
    /// @return requestId The Router's request id.
    function ask(bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32 requestId)
    {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        requestId = _sendRequest(LLM_CHAT, input, callbackGasLimit, ttl, msg.value);
        emit Asked(requestId);
    }

    function _onFulfillment(bytes32 requestId, uint8 status, bytes calldata result) internal override {
        if (status == _STATUS_OK) {
            (bytes32 endpointHash, string memory model, bytes32 promptHash, bytes32 responseHash, string memory response)
            = abi.decode(result, (bytes32, string, bytes32, bytes32, string));
            answerHashes[requestId] = responseHash;
            emit Answered(requestId, endpointHash, model, promptHash, responseHash, response);
        } else if (status == _STATUS_RESULT_OFFCHAIN) {
            (bytes32 resultHash, uint256 length) = abi.decode(result, (bytes32, uint256));
            answerHashes[requestId] = resultHash;
            emit AnsweredOffchain(requestId, resultHash, length);
        } else {
            emit Failed(requestId, status);
        }
    }
}
