// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "../interfaces/IRouter.sol";
import {TeeBridgeConsumer} from "../TeeBridgeConsumer.sol";

/// @title ModerationGate
/// @notice A content-moderation gate driven by the `ai.classify@1` job: a post is published only when a
///         model this contract trusts (named by its content hash) puts it in the accepted class, by a margin.
/// @dev The request input is built on-chain: a plain envelope `0x00 || abi.encode(trustedModel, text, labels)`.
///      The result `(bytes32 modelHash, uint16 label, int32 margin, int32[] scores)` is acted on only if
///      `modelHash == trustedModel`; a result from any other model, an error status or a close call never
///      publishes. See docs/ai-oracle.md.
contract ModerationGate is TeeBridgeConsumer {
    /// @notice keccak256("ai.classify@1").
    bytes32 public constant CLASSIFY_JOB = keccak256("ai.classify@1");
    /// @notice Gas the Router gives the callback (decoding the result and storing the verdict).
    uint32 public constant CALLBACK_GAS = 150_000;
    /// @notice Longest post accepted, in bytes (the job itself accepts up to 8192).
    uint256 public constant MAX_POST_BYTES = 2048;
    /// @notice Seconds a request may wait for its answer before anyone can cancel it.
    uint64 public constant REQUEST_TTL = 1 hours;

    /// @notice What happened to a post.
    enum Verdict {
        None,
        Pending,
        Published,
        Blocked,
        Failed
    }

    struct Post {
        address author;
        Verdict verdict;
        bytes32 textHash;
    }

    /// @notice Content hash of the model whose answers this gate acts on.
    bytes32 public immutable trustedModel;
    /// @notice Index (in `labels`) of the class that may be published.
    uint16 public immutable acceptedLabel;
    /// @notice Smallest lead of the best class over the runner-up, in millionths of cosine similarity.
    int32 public immutable minMargin;
    /// @notice The classes the job chooses between, each written as a short description.
    string[] public labels;
    /// @notice Posts by request id.
    mapping(bytes32 requestId => Post) public posts;

    error EmptyPost();
    error PostTooLong(uint256 length, uint256 max);
    error BadLabels(uint256 count, uint16 acceptedLabel);
    error NegativeMargin(int32 minMargin);

    event PostSubmitted(bytes32 indexed requestId, address indexed author, string text);
    event PostPublished(bytes32 indexed requestId, address indexed author, int32 margin);
    event PostBlocked(bytes32 indexed requestId, address indexed author, uint16 label, int32 margin);
    /// @notice The request ended without a usable verdict: an error status, or an answer from another model.
    event ModerationFailed(bytes32 indexed requestId, uint8 status, bytes32 modelHash);

    /// @param router_ The teebridge Router.
    /// @param trustedModel_ Content hash of the model to trust (`teebridge models hash`).
    /// @param labels_ 2..16 class descriptions, e.g. ["a kind and respectful comment", "a hateful, abusive insult"].
    /// @param acceptedLabel_ Index of the class that may be published.
    /// @param minMargin_ Required lead of that class over the runner-up (1e6 = a cosine difference of 1).
    constructor(
        IRouter router_,
        bytes32 trustedModel_,
        string[] memory labels_,
        uint16 acceptedLabel_,
        int32 minMargin_
    ) TeeBridgeConsumer(router_) {
        if (labels_.length < 2 || labels_.length > 16 || acceptedLabel_ >= labels_.length) {
            revert BadLabels(labels_.length, acceptedLabel_);
        }
        if (minMargin_ < 0) revert NegativeMargin(minMargin_);
        trustedModel = trustedModel_;
        labels = labels_;
        acceptedLabel = acceptedLabel_;
        minMargin = minMargin_;
    }

    /// @notice Submit a post for moderation; it is published or blocked when the answer arrives.
    /// @dev msg.value is the fee paid to the relayer that delivers the answer.
    /// @param text The post (UTF-8, 1..MAX_POST_BYTES bytes). It is public: it goes on-chain in the request.
    /// @return requestId The Router request id, the key of `posts`.
    function submit(string calldata text) external payable returns (bytes32 requestId) {
        uint256 length = bytes(text).length;
        if (length == 0) revert EmptyPost();
        if (length > MAX_POST_BYTES) revert PostTooLong(length, MAX_POST_BYTES);
        bytes memory input = abi.encodePacked(bytes1(0x00), abi.encode(trustedModel, text, labels));
        requestId = _sendRequest(CLASSIFY_JOB, input, CALLBACK_GAS, REQUEST_TTL, msg.value);
        posts[requestId] = Post({author: msg.sender, verdict: Verdict.Pending, textHash: keccak256(bytes(text))});
        emit PostSubmitted(requestId, msg.sender, text);
    }

    /// @notice The number of classes.
    /// @return count How many labels the gate classifies against.
    function labelCount() external view returns (uint256 count) {
        return labels.length;
    }

    /// @notice Whether a post was published.
    /// @param requestId The request id `submit` returned.
    /// @return published True once the trusted model accepted it.
    function isPublished(bytes32 requestId) external view returns (bool published) {
        return posts[requestId].verdict == Verdict.Published;
    }

    function _onFulfillment(bytes32 requestId, uint8 status, bytes calldata result) internal override {
        Post storage post = posts[requestId];
        if (post.verdict != Verdict.Pending) return;
        if (status != 0) {
            post.verdict = Verdict.Failed;
            emit ModerationFailed(requestId, status, bytes32(0));
            return;
        }
        (bytes32 modelHash, uint16 label, int32 margin,) = abi.decode(result, (bytes32, uint16, int32, int32[]));
        if (modelHash != trustedModel) {
            post.verdict = Verdict.Failed;
            emit ModerationFailed(requestId, status, modelHash);
            return;
        }
        if (label == acceptedLabel && margin >= minMargin) {
            post.verdict = Verdict.Published;
            emit PostPublished(requestId, post.author, margin);
        } else {
            post.verdict = Verdict.Blocked;
            emit PostBlocked(requestId, post.author, label, margin);
        }
    }
}
