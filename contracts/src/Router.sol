// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IEnclaveRegistry} from "./interfaces/IEnclaveRegistry.sol";
import {IRouter} from "./interfaces/IRouter.sol";
import {IRouterAuthorizations} from "./interfaces/IRouterAuthorizations.sol";
import {ITeeBridgeConsumer} from "./interfaces/ITeeBridgeConsumer.sol";

/// @title Router
/// @notice Takes requests from consumer contracts and delivers results signed by attested enclaves.
/// @dev One storage slot per pending request: a commitment hash over everything a fulfilment must match.
///      Who may sign is decided by the registry, which mirrors every (signer, job, measurement) it authorizes
///      into this contract ({setAuthorizations}), so a fulfilment reads one storage slot of its own for it
///      instead of calling another contract (docs/protocol.md, section 9.4).
///      Wire formats (request id, commitment, EIP-712 Fulfillment, status codes) are in docs/protocol.md.
contract Router is IRouter, IRouterAuthorizations {
    /// @notice The fields a request is committed to; a fulfilment or a cancellation must repeat them exactly.
    struct Request {
        bytes32 requestId;
        address requester;
        bytes32 jobId;
        bytes32 inputHash;
        uint32 callbackGasLimit;
        uint96 fee;
        uint64 expiry;
    }

    /// @notice A request, the enclave's answer and its EIP-712 signature in compact (EIP-2098) form.
    struct SignedFulfillment {
        Request request;
        uint8 status;
        bytes result;
        bytes32 measurement;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice {FulfillmentSkipped} reason: the request is unknown, already fulfilled or cancelled.
    uint8 public constant SKIP_NOT_PENDING = 1;
    /// @notice {FulfillmentSkipped} reason: the request fields do not match the stored commitment.
    uint8 public constant SKIP_COMMITMENT_MISMATCH = 2;
    /// @notice {FulfillmentSkipped} reason: the request expired before this fulfilment.
    uint8 public constant SKIP_EXPIRED = 3;
    /// @notice {FulfillmentSkipped} reason: the signature is malformed or malleable (s > n/2).
    uint8 public constant SKIP_BAD_SIGNATURE = 4;
    /// @notice {FulfillmentSkipped} reason: the signer is not a live enclave approved for the job.
    uint8 public constant SKIP_UNAUTHORIZED_SIGNER = 5;

    /// @notice Longest time a request may wait for its fulfilment.
    uint64 public constant MAX_TTL = 30 days;

    /// @notice EIP-712 type hash of the signed `Fulfillment` struct (docs/protocol.md, section 6).
    bytes32 public constant FULFILLMENT_TYPEHASH = keccak256(
        "Fulfillment(bytes32 requestId,bytes32 commitment,uint8 status,bytes32 resultHash,bytes32 measurement)"
    );
    /// @notice EIP-712 type hash of `FulfillmentBatch`: one signature over many fulfilments (docs/protocol.md, 6).
    bytes32 public constant FULFILLMENT_BATCH_TYPEHASH = keccak256(
        "FulfillmentBatch(Fulfillment[] fulfillments)"
        "Fulfillment(bytes32 requestId,bytes32 commitment,uint8 status,bytes32 resultHash,bytes32 measurement)"
    );
    /// @notice Packed item flag of {fulfillBatchSigned}: the item omits `requester`, it is the previous item's.
    uint8 public constant SAME_REQUESTER = 1;
    /// @notice Packed item flag of {fulfillBatchSigned}: the item omits `jobId`, it is the previous item's.
    uint8 public constant SAME_JOB = 2;
    /// @dev The shortest packed item: flags, request number, inputHash, the 27-byte word, an empty result.
    uint256 private constant _PACKED_ITEM_MIN = 68;
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("teebridge");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    /// @dev Gas kept back for the work between the exact-gas check and the CALL ({_callWithExactGas} and
    ///      {_deliverPackedItems}: the CALL's own cost, the consumer's account being warm by then).
    uint256 private constant _GAS_FOR_CALL_EXACT_CHECK = 5_000;
    /// @dev The flag bit of an authorization record for a signer registered from a simulated attestation.
    uint256 private constant _SIMULATED_BIT = 1 << 64;
    /// @dev The length of a packed item without its result.
    uint256 private constant _PACKED_ITEM_HEAD = 120;
    /// @dev Where {fulfillPacked}'s item starts in its calldata: after the selector, measurement, r and vs.
    uint256 private constant _PACKED_CALL_ITEM = 0x64;
    /// @dev {fulfillPacked}'s failure for a malformed call (not a SKIP_* reason: it always reverts).
    uint256 private constant _MALFORMED = 255;
    /// @dev {fulfillPacked}'s failure when the transaction cannot give the callback its gas.
    uint256 private constant _STARVED = 254;
    /// @dev {fulfillPacked}'s failure when the fee cannot be paid to the submitter.
    uint256 private constant _PAYMENT_FAILED = 253;
    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and are refused.
    uint256 private constant _HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice The registry that says which signers are attested and approved; the only account that may
    ///         write this Router's authorization records.
    IEnclaveRegistry public immutable registry;
    /// @notice Upper bound on the gas a request may ask for its callback.
    uint32 public immutable maxCallbackGasLimit;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;
    uint256 private immutable _cachedRequestIdPrefix;

    /// @notice Number of requests made so far. Request number `n` (from 1) has the id
    ///         `requestIdPrefix() | n`; packed fulfilments carry `n` instead of the id.
    uint64 public nonce;
    /// @notice Pending requests: request id => commitment. Zero once fulfilled or cancelled.
    mapping(bytes32 requestId => bytes32 commitment) public commitments;
    /// @notice Mirror of the registry's flag: whether signers registered from simulated attestations count.
    bool public simulatedAttestationsAllowed;
    /// @dev The registry's authorizations: keccak256(abi.encode(signer, jobId, measurement)) => the signer's
    ///      expiry (low 64 bits) | 1 << 64 when it was registered from a simulated attestation. Zero: none.
    mapping(bytes32 key => uint256 record) private _authorizations;

    error ZeroAddress();
    error CallbackGasLimitTooHigh(uint32 requested, uint32 maximum);
    error InvalidTtl(uint64 ttl);
    error FeeTooHigh(uint256 fee);
    error CommitmentMismatch(bytes32 requestId);
    error RequestExpired(bytes32 requestId, uint64 expiry);
    error RequestNotExpired(bytes32 requestId, uint64 expiry);
    error RequestNotPending(bytes32 requestId);
    error InvalidSignature(bytes32 requestId);
    error UnauthorizedSigner(bytes32 requestId, address signer);
    error InsufficientGasForCallback(bytes32 requestId);
    error PaymentFailed(address to, uint256 amount);
    error MalformedBatch(uint256 offset);
    error InvalidBatchSignature();
    error MalformedItem();
    error NotRegistry();

    /// @notice A new request; carries everything a relayer and a coprocessor need.
    event Requested(
        bytes32 indexed requestId,
        address indexed requester,
        bytes32 indexed jobId,
        uint32 callbackGasLimit,
        uint96 fee,
        uint64 expiry,
        bytes input
    );
    /// @notice A fulfilment was accepted: the request is settled, whatever its callback did. `status` is the
    ///         enclave's. A callback that failed adds {CallbackFailed}; none means it succeeded.
    /// @dev The submitter, who is paid the fee, is the caller of the fulfil function (the transaction's sender
    ///      for a relayer): it is not repeated in every item's event.
    event Fulfilled(bytes32 indexed requestId, address indexed signer, uint8 status);
    /// @notice The callback of a fulfilled request reverted or ran out of its gas (`gasUsed`: the gas spent
    ///         across the CALL), or the requester has no code to call (`gasUsed` 0). Emitted after {Fulfilled}.
    event CallbackFailed(bytes32 indexed requestId, uint256 gasUsed);
    /// @notice A fulfilment was not delivered; `reason` is one of the SKIP_* constants.
    event FulfillmentSkipped(bytes32 indexed requestId, uint8 reason);
    /// @notice The registry set (expiry > 0) or removed (expiry = 0) `signer`'s authorization for each of
    ///         `jobIds` under `measurement`.
    event AuthorizationsSet(
        address indexed signer, bytes32 indexed measurement, bytes32[] jobIds, uint64 expiry, bool simulated
    );
    /// @notice The registry allowed or forbade signers registered from simulated attestations.
    event SimulatedAttestationsAllowedSet(bool allowed);
    /// @notice An expired request was cancelled and its fee refunded to the requester.
    event Cancelled(bytes32 indexed requestId, address indexed requester, uint96 fee);

    /// @param registry_ The enclave registry.
    /// @param maxCallbackGasLimit_ The largest callback gas limit a request may ask for.
    constructor(IEnclaveRegistry registry_, uint32 maxCallbackGasLimit_) {
        if (address(registry_) == address(0)) revert ZeroAddress();
        registry = registry_;
        maxCallbackGasLimit = maxCallbackGasLimit_;
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        _cachedRequestIdPrefix = _buildRequestIdPrefix();
    }

    // ------------------------------------------------------------------ requests

    /// @inheritdoc IRouter
    function request(bytes32 jobId, bytes calldata input, uint32 callbackGasLimit, uint64 ttl)
        external
        payable
        returns (bytes32 requestId)
    {
        if (callbackGasLimit > maxCallbackGasLimit) {
            revert CallbackGasLimitTooHigh(callbackGasLimit, maxCallbackGasLimit);
        }
        if (ttl == 0 || ttl > MAX_TTL) revert InvalidTtl(ttl);
        if (msg.value > type(uint96).max) revert FeeTooHigh(msg.value);
        uint96 fee = uint96(msg.value);
        uint64 expiry = uint64(block.timestamp) + ttl;
        unchecked {
            requestId = bytes32(requestIdPrefix() | ++nonce);
        }
        commitments[requestId] = _commitment(
            Request({
                requestId: requestId,
                requester: msg.sender,
                jobId: jobId,
                inputHash: keccak256(input),
                callbackGasLimit: callbackGasLimit,
                fee: fee,
                expiry: expiry
            })
        );
        emit Requested(requestId, msg.sender, jobId, callbackGasLimit, fee, expiry, input);
    }

    /// @notice Refund an expired, unfulfilled request to its requester. Anyone may call it.
    /// @param req The request's committed fields, as emitted in {Requested}.
    function cancel(Request calldata req) external {
        bytes32 stored = commitments[req.requestId];
        if (stored == 0) revert RequestNotPending(req.requestId);
        if (stored != _commitment(req)) revert CommitmentMismatch(req.requestId);
        if (block.timestamp <= req.expiry) revert RequestNotExpired(req.requestId, req.expiry);
        delete commitments[req.requestId];
        emit Cancelled(req.requestId, req.requester, req.fee);
        _pay(req.requester, req.fee);
    }

    // ------------------------------------------------------------------ fulfilments

    /// @notice Deliver one signed result.
    /// @dev An unknown or already settled request is a cheap no-op that emits {FulfillmentSkipped} and
    ///      returns false, so racing relayers do not burn gas on reverts. Any other defect reverts.
    /// @param f The request fields, the result and the enclave's signature.
    /// @return delivered True when the result was accepted (whatever the callback did).
    function fulfill(SignedFulfillment calldata f) external returns (bool delivered) {
        Request memory req = f.request;
        (uint8 skip, address signer) = _check(f, req);
        if (skip == SKIP_NOT_PENDING) {
            emit FulfillmentSkipped(req.requestId, skip);
            return false;
        }
        if (skip != 0) _revertFor(skip, f, signer);
        _deliver(req, f.status, f.result, signer);
        _pay(msg.sender, req.fee);
        return true;
    }

    /// @notice Deliver one signed result given as a packed item: {fulfill}'s checks and effects for about
    ///         3,700 gas less (no ABI-encoded struct, 128 calldata bytes less). Relayers' path for one result.
    /// @dev The calldata after the selector is not ABI-encoded: measurement (32) | r (32) | vs (32) | item,
    ///      where item is one item of {fulfillBatchSigned}'s packed format with flags 0 (docs/protocol.md,
    ///      section 7.2): flags (1) | request number (8, the low 64 bits of the request id: the Router adds
    ///      {requestIdPrefix}) | requester (20) | jobId (32) | inputHash (32) |
    ///      callbackGasLimit (4) | fee (12) | expiry (8) | status (1) | result length (2) | result, and nothing
    ///      after the result. (r, vs) is the item's own EIP-712 `Fulfillment` signature in compact (EIP-2098)
    ///      form, the one {fulfill} takes. Like {fulfill}, a request that is no longer pending is a no-op with
    ///      {FulfillmentSkipped}; every other defect reverts ({MalformedItem}, {CommitmentMismatch},
    ///      {RequestExpired}, {InvalidSignature}, {UnauthorizedSigner}, {InsufficientGasForCallback},
    ///      {PaymentFailed}).
    /// @return delivered True when the result was accepted (whatever the callback did).
    function fulfillPacked() external returns (bool delivered) {
        (bytes32 separator, uint256 prefix) = _domain();
        bytes32 typeHash = FULFILLMENT_TYPEHASH;
        bytes32 fulfilledTopic = Fulfilled.selector;
        bytes32 callbackFailedTopic = CallbackFailed.selector;
        bytes4 callbackSelector = ITeeBridgeConsumer.handleFulfillment.selector;
        bytes32 requestId;
        uint256 word;
        address signer;
        uint256 failure;
        // One pass, in {fulfill}'s order: the item's form, pending, commitment, expiry, signature, authorization;
        // then the effects. Every way out but success sets `failure` and `break`s, for the code below.
        assembly ("memory-safe") {
            for {} 1 {} {
                let head := calldataload(_PACKED_CALL_ITEM) // flags (1) | request number (8) | ...
                word := shr(40, calldataload(add(_PACKED_CALL_ITEM, 93))) // gas | fee | expiry | status | length
                let length := and(word, 0xffff)
                requestId := or(prefix, shr(192, shl(8, head)))
                // The item: flags 0 and exactly its result after the head (this also rules out a short call).
                if or(byte(0, head), iszero(eq(calldatasize(), add(add(_PACKED_CALL_ITEM, _PACKED_ITEM_HEAD), length))))
                {
                    failure := _MALFORMED
                    break
                }
                let requester := shr(96, calldataload(add(_PACKED_CALL_ITEM, 9)))
                // The commitment: keccak256 of the Request struct's seven words (as {_commitment}).
                let m := mload(0x40) // scratch above the free memory pointer, never allocated
                mstore(m, requestId)
                mstore(add(m, 0x20), requester)
                mstore(add(m, 0x40), calldataload(add(_PACKED_CALL_ITEM, 29))) // jobId
                mstore(add(m, 0x60), calldataload(add(_PACKED_CALL_ITEM, 61))) // inputHash
                mstore(add(m, 0x80), shr(184, word)) // callbackGasLimit
                mstore(add(m, 0xa0), and(shr(88, word), 0xffffffffffffffffffffffff)) // fee
                mstore(add(m, 0xc0), and(shr(24, word), 0xffffffffffffffff)) // expiry
                let commitment := keccak256(m, 0xe0)
                mstore(0x00, requestId)
                mstore(0x20, commitments.slot)
                let slot := keccak256(0x00, 0x40)
                {
                    let stored := sload(slot)
                    if iszero(eq(stored, commitment)) {
                        failure := SKIP_COMMITMENT_MISMATCH
                        if iszero(stored) { failure := SKIP_NOT_PENDING }
                        break
                    }
                }
                if gt(timestamp(), mload(add(m, 0xc0))) {
                    failure := SKIP_EXPIRED
                    break
                }
                // The digest of Fulfillment(requestId, commitment, status, keccak256(result), measurement).
                calldatacopy(m, add(_PACKED_CALL_ITEM, _PACKED_ITEM_HEAD), length)
                mstore(add(m, 0x80), keccak256(m, length))
                mstore(m, typeHash)
                mstore(add(m, 0x20), requestId)
                mstore(add(m, 0x40), commitment)
                mstore(add(m, 0x60), and(shr(16, word), 0xff)) // status
                mstore(add(m, 0xa0), calldataload(0x04)) // measurement
                commitment := keccak256(m, 0xc0) // (now the struct hash)
                mstore(m, shl(240, 0x1901))
                mstore(add(m, 0x02), separator)
                mstore(add(m, 0x22), commitment)
                mstore(m, keccak256(m, 0x42))
                // ecrecover of the compact signature, refusing malleable (high s) ones (as {_recover}).
                {
                    let vs := calldataload(0x44)
                    let sValue := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                    if gt(sValue, _HALF_CURVE_ORDER) {
                        failure := SKIP_BAD_SIGNATURE
                        break
                    }
                    mstore(add(m, 0x20), add(shr(255, vs), 27))
                    mstore(add(m, 0x40), calldataload(0x24))
                    mstore(add(m, 0x60), sValue)
                }
                // The precompile writes nothing for a signature that recovers no key: 0x00 stays zero.
                mstore(0x00, 0)
                pop(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20))
                signer := mload(0x00)
                if iszero(signer) {
                    failure := SKIP_BAD_SIGNATURE
                    break
                }
                // The authorization record (as {isAuthorized}).
                mstore(m, signer)
                mstore(add(m, 0x20), calldataload(add(_PACKED_CALL_ITEM, 29))) // jobId
                mstore(add(m, 0x40), calldataload(0x04)) // measurement
                mstore(0x00, keccak256(m, 0x60))
                mstore(0x20, _authorizations.slot)
                {
                    let record := sload(keccak256(0x00, 0x40))
                    failure := SKIP_UNAUTHORIZED_SIGNER
                    if iszero(gt(and(record, 0xffffffffffffffff), timestamp())) { break }
                    // A simulated signer also needs the flag: one more slot, on local chains only.
                    if and(record, _SIMULATED_BIT) {
                        let flags := sload(simulatedAttestationsAllowed.slot)
                        if iszero(and(shr(mul(8, simulatedAttestationsAllowed.offset), flags), 0xff)) { break }
                    }
                }
                // Effects, then the callback with exactly the requested gas (as {_deliver}).
                sstore(slot, 0)
                mstore(add(m, 0x20), 0) // the callback's success
                mstore(add(m, 0x40), 0) // the gas it used
                if extcodesize(requester) {
                    // abi.encodeCall(ITeeBridgeConsumer.handleFulfillment, (requestId, status, result))
                    let data := add(m, 0x60)
                    let size := add(0x84, and(add(length, 31), not(31)))
                    mstore(add(data, sub(size, 0x20)), 0) // the last word's padding
                    mstore(data, callbackSelector)
                    mstore(add(data, 0x04), requestId)
                    mstore(add(data, 0x24), and(shr(16, word), 0xff))
                    mstore(add(data, 0x44), 0x60)
                    mstore(add(data, 0x64), length)
                    calldatacopy(add(data, 0x84), add(_PACKED_CALL_ITEM, _PACKED_ITEM_HEAD), length)
                    // Checked just before the CALL (as {_callWithExactGas}).
                    failure := _STARVED
                    let available := sub(gas(), _GAS_FOR_CALL_EXACT_CHECK)
                    if lt(gas(), _GAS_FOR_CALL_EXACT_CHECK) { break }
                    if iszero(gt(sub(available, div(available, 64)), shr(184, word))) { break }
                    available := gas()
                    mstore(add(m, 0x20), call(shr(184, word), requester, 0, data, size, 0, 0))
                    mstore(add(m, 0x40), sub(available, gas()))
                }
                mstore(m, and(shr(16, word), 0xff)) // status
                log3(m, 0x20, fulfilledTopic, requestId, signer)
                if iszero(mload(add(m, 0x20))) { log2(add(m, 0x40), 0x20, callbackFailedTopic, requestId) }
                // The fee to the submitter (as {_pay}).
                {
                    let fee := and(shr(88, word), 0xffffffffffffffffffffffff)
                    if fee {
                        failure := _PAYMENT_FAILED
                        if iszero(call(gas(), caller(), fee, 0, 0, 0, 0)) { break }
                    }
                }
                mstore(0x00, 1)
                return(0x00, 0x20)
            }
        }
        if (failure == SKIP_NOT_PENDING) {
            emit FulfillmentSkipped(requestId, SKIP_NOT_PENDING);
            return false;
        }
        _revertPackedCall(failure, requestId, word, signer);
    }

    /// @notice Deliver many signed results in one transaction, each on its own.
    /// @dev An item that fails a check emits {FulfillmentSkipped} with the reason and the rest go on.
    ///      The fees of the delivered items are paid to the submitter in one transfer.
    /// @param items The fulfilments.
    /// @return delivered How many items were accepted.
    function fulfillBatch(SignedFulfillment[] calldata items) external returns (uint256 delivered) {
        uint256 fees;
        for (uint256 i; i < items.length; ++i) {
            SignedFulfillment calldata f = items[i];
            Request memory req = f.request;
            (uint8 skip, address signer) = _check(f, req);
            if (skip != 0) {
                emit FulfillmentSkipped(req.requestId, skip);
                continue;
            }
            _deliver(req, f.status, f.result, signer);
            unchecked {
                fees += req.fee;
                ++delivered;
            }
        }
        _pay(msg.sender, fees);
    }

    /// @notice Deliver many results under one enclave signature over the whole batch (EIP-712
    ///         `FulfillmentBatch`): the cheap path for relayers, about two fifths of {fulfillBatch}'s overhead.
    /// @dev `items` is the concatenation of packed items (docs/protocol.md, section 7.1): flags (1) |
    ///      request number (8, see {fulfillPacked}) | requester (20, left out under SAME_REQUESTER) | jobId (32, left
    ///      out under SAME_JOB) |
    ///      inputHash (32) | callbackGasLimit (4) | fee (12) | expiry (8) | status (1) | result length (2) |
    ///      result. A left-out field is the previous item's. The signature covers every item, so a relayer
    ///      can neither add, drop, reorder nor alter one; an item that is no longer pending, does not match its
    ///      commitment, has expired or whose job does not approve the signer's measurement is skipped with
    ///      {FulfillmentSkipped}, and the rest go on. A bad signature or a malformed `items` reverts.
    /// @param items The packed items.
    /// @param measurement The signer's measurement (part of every signed `Fulfillment`).
    /// @param r The signature's r.
    /// @param vs The signature's s with the recovery bit in its top bit (EIP-2098).
    /// @return delivered How many items were accepted.
    function fulfillBatchSigned(bytes calldata items, bytes32 measurement, bytes32 r, bytes32 vs)
        external
        returns (uint256 delivered)
    {
        (bytes32 digest, uint256 commitmentsAt) = _batchDigest(items, measurement);
        address signer = _recover(digest, r, vs);
        if (signer == address(0)) revert InvalidBatchSignature();
        uint256 frame = _deliveryFrame(signer, measurement);
        uint256 fees;
        (delivered, fees) = _deliverPackedItems(items, commitmentsAt, frame);
        bytes32 starved = _starved(frame);
        if (starved != 0) revert InsufficientGasForCallback(starved);
        _pay(msg.sender, fees);
    }

    // ------------------------------------------------------------------ authorizations

    /// @inheritdoc IRouterAuthorizations
    /// @dev The registry calls it on every registration, renewal, revocation, approval and withdrawal.
    function setAuthorizations(
        address signer,
        bytes32 measurement,
        bytes32[] calldata jobIds,
        uint64 expiry,
        bool simulated
    ) external {
        if (msg.sender != address(registry)) revert NotRegistry();
        uint256 record = expiry == 0 ? 0 : uint256(expiry) | (simulated ? _SIMULATED_BIT : 0);
        for (uint256 i; i < jobIds.length; ++i) {
            _authorizations[_authorizationKey(signer, jobIds[i], measurement)] = record;
        }
        emit AuthorizationsSet(signer, measurement, jobIds, expiry, simulated);
    }

    /// @inheritdoc IRouterAuthorizations
    function setSimulatedAttestationsAllowed(bool allowed) external {
        if (msg.sender != address(registry)) revert NotRegistry();
        simulatedAttestationsAllowed = allowed;
        emit SimulatedAttestationsAllowedSet(allowed);
    }

    /// @inheritdoc IRouterAuthorizations
    function isAuthorized(address signer, bytes32 jobId, bytes32 measurement) public view returns (bool) {
        uint256 record = _authorizations[_authorizationKey(signer, jobId, measurement)];
        if (uint64(record) <= block.timestamp) return false;
        return record & _SIMULATED_BIT == 0 || simulatedAttestationsAllowed;
    }

    // ------------------------------------------------------------------ views

    /// @notice The EIP-712 domain separator for this router on the current chain.
    /// @return The domain separator.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice The high 192 bits every request id of this router on the current chain starts with: those of
    ///         keccak256(abi.encode(chainId, router)). The low 64 bits are the request's number (docs/protocol.md,
    ///         section 3.1).
    /// @return The prefix, its low 64 bits zero.
    function requestIdPrefix() public view returns (uint256) {
        return block.chainid == _cachedChainId ? _cachedRequestIdPrefix : _buildRequestIdPrefix();
    }

    /// @notice The stored commitments of many requests at once (zero: unknown, fulfilled or cancelled).
    /// @dev A view for relayers, so one call checks a whole batch; its cost is the caller's, bounded by its input.
    /// @param requestIds The request ids.
    /// @return stored The commitment of each, in order.
    function commitmentsOf(bytes32[] calldata requestIds) external view returns (bytes32[] memory stored) {
        stored = new bytes32[](requestIds.length);
        for (uint256 i; i < requestIds.length; ++i) {
            stored[i] = commitments[requestIds[i]];
        }
    }

    /// @notice The commitment the Router stores for a request with these fields.
    /// @param req The request fields.
    /// @return The commitment hash.
    function commitmentOf(Request calldata req) external pure returns (bytes32) {
        return _commitment(req);
    }

    /// @notice The EIP-712 digest an enclave signs for a fulfilment.
    /// @param requestId The request id.
    /// @param commitment The request's commitment.
    /// @param status The status code.
    /// @param resultHash keccak256 of the result bytes.
    /// @param measurement The signer's measurement.
    /// @return The digest.
    function fulfillmentDigest(
        bytes32 requestId,
        bytes32 commitment,
        uint8 status,
        bytes32 resultHash,
        bytes32 measurement
    ) public view returns (bytes32) {
        bytes32 structHash =
            keccak256(abi.encode(FULFILLMENT_TYPEHASH, requestId, commitment, status, resultHash, measurement));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @notice The EIP-712 digest an enclave signs for a batch given as {fulfillBatchSigned}'s packed items.
    /// @param items The packed items.
    /// @param measurement The signer's measurement.
    /// @return digest The digest.
    function fulfillmentBatchDigest(bytes calldata items, bytes32 measurement) external view returns (bytes32 digest) {
        (digest,) = _batchDigest(items, measurement);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Every check a fulfilment must pass, without touching state. Returns 0 and the signer when it
    ///      passes, else a SKIP_* reason (and the signer when the reason concerns it).
    ///      `req` is `f.request`, already in memory.
    function _check(SignedFulfillment calldata f, Request memory req)
        private
        view
        returns (uint8 skip, address signer)
    {
        bytes32 commitment;
        (skip, commitment) = _checkPending(req);
        if (skip != 0) return (skip, address(0));
        bytes32 digest = fulfillmentDigest(req.requestId, commitment, f.status, keccak256(f.result), f.measurement);
        signer = _recover(digest, f.r, f.vs);
        if (signer == address(0)) return (SKIP_BAD_SIGNATURE, address(0));
        if (!isAuthorized(signer, req.jobId, f.measurement)) return (SKIP_UNAUTHORIZED_SIGNER, signer);
        return (0, signer);
    }

    function _revertFor(uint8 skip, SignedFulfillment calldata f, address signer) private pure {
        bytes32 id = f.request.requestId;
        if (skip == SKIP_COMMITMENT_MISMATCH) revert CommitmentMismatch(id);
        if (skip == SKIP_EXPIRED) revert RequestExpired(id, f.request.expiry);
        if (skip == SKIP_BAD_SIGNATURE) revert InvalidSignature(id);
        revert UnauthorizedSigner(id, signer);
    }

    /// @dev Calls `target` with exactly `gasAmount` gas, or reverts if the transaction cannot provide it
    ///      (after EIP-150's 63/64 rule). Return data is never copied, so a callback cannot grief with it.
    ///      A target without code counts as a failed callback.
    function _callWithExactGas(bytes32 requestId, uint256 gasAmount, address target, bytes memory data)
        private
        returns (bool success, uint256 gasUsed)
    {
        if (target.code.length == 0) return (false, 0);
        // Checked just before the CALL, after the code-size check (a cold account costs 2,600), as in
        // {_deliverPackedItems}: only the CALL itself runs between the check and the call.
        bool enoughGas;
        assembly ("memory-safe") {
            let g := gas()
            if gt(g, _GAS_FOR_CALL_EXACT_CHECK) {
                g := sub(g, _GAS_FOR_CALL_EXACT_CHECK)
                enoughGas := gt(sub(g, div(g, 64)), gasAmount)
            }
        }
        if (!enoughGas) revert InsufficientGasForCallback(requestId);
        assembly ("memory-safe") {
            let before := gas()
            success := call(gasAmount, target, 0, add(data, 0x20), mload(data), 0, 0)
            gasUsed := sub(before, gas())
        }
    }

    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }

    /// @dev The checks and deliveries of {fulfillBatchSigned} once its signature is known good: for each item,
    ///      the checks of {_checkPending} (against the commitment {_batchDigest} already computed), the
    ///      authorization record (read once per run of items with the same job), then the effects and the callback of {_deliver}.
    ///      Written in assembly because it runs once per item: no memory is allocated in the loop and the
    ///      packed fields are read straight from calldata. `items` was validated by {_batchDigest}; `frame` is
    ///      {_deliveryFrame}'s.
    function _deliverPackedItems(bytes calldata items, uint256 commitmentsAt, uint256 frame)
        private
        returns (uint256 delivered, uint256 fees)
    {
        assembly ("memory-safe") {
            let end := add(items.offset, items.length)
            for { let item := items.offset } lt(item, end) { commitmentsAt := add(commitmentsAt, 0x20) } {
                let requestId := or(mload(add(frame, 0xc0)), shr(192, calldataload(add(item, 1)))) // prefix | number
                {
                    let flags := byte(0, calldataload(item))
                    item := add(item, 9)
                    if iszero(and(flags, SAME_REQUESTER)) {
                        mstore(add(frame, 0x1c0), shr(96, calldataload(item)))
                        item := add(item, 20)
                    }
                    if iszero(and(flags, SAME_JOB)) {
                        mstore(add(frame, 0x1e0), calldataload(item))
                        item := add(item, 32)
                    }
                }
                // `item` now points at inputHash (32), then: gas (4) | fee (12) | expiry (8) | status (1) | length (2)
                let word := calldataload(add(item, 32))
                mstore(0x00, requestId)
                mstore(0x20, commitments.slot)
                let slot := keccak256(0x00, 0x40)
                let skip := SKIP_NOT_PENDING
                {
                    let stored := sload(slot)
                    if stored {
                        skip := SKIP_COMMITMENT_MISMATCH
                        if eq(stored, mload(commitmentsAt)) {
                            skip := SKIP_EXPIRED
                            if iszero(gt(timestamp(), and(shr(64, word), 0xffffffffffffffff))) {
                                let jobId := mload(add(frame, 0x1e0))
                                if or(iszero(mload(add(frame, 0x100))), iszero(eq(jobId, mload(add(frame, 0xe0))))) {
                                    // The first job, or a new one: read its authorization record (as
                                    // {isAuthorized}), keyed by the signer, job and measurement words at 0x124.
                                    mstore(add(frame, 0xe0), jobId)
                                    mstore(add(frame, 0x144), jobId)
                                    mstore(0x00, keccak256(add(frame, 0x124), 0x60))
                                    mstore(0x20, _authorizations.slot)
                                    let record := sload(keccak256(0x00, 0x40))
                                    let authorized := gt(and(record, 0xffffffffffffffff), timestamp())
                                    if and(authorized, shr(64, record)) {
                                        // A simulated signer also needs the flag: one more slot, local chains only.
                                        let flags := sload(simulatedAttestationsAllowed.slot)
                                        authorized := and(shr(mul(8, simulatedAttestationsAllowed.offset), flags), 0xff)
                                    }
                                    mstore(add(frame, 0x100), add(1, mul(SKIP_UNAUTHORIZED_SIGNER, iszero(authorized))))
                                }
                                skip := sub(mload(add(frame, 0x100)), 1)
                            }
                        }
                    }
                }
                switch skip
                case 0 {
                    sstore(slot, 0)
                    let out := frame // the event data; a copy near the top of the stack
                    let requester := mload(add(out, 0x1c0))
                    mstore(add(out, 0x20), 0) // the callback's gas used (CallbackFailed's data)
                    let ok := 0
                    if extcodesize(requester) {
                        // abi.encodeCall(ITeeBridgeConsumer.handleFulfillment, (requestId, status, result))
                        let length := and(shr(40, word), 0xffff)
                        let data := add(out, 0x200)
                        let size := add(0x84, and(add(length, 31), not(31)))
                        mstore(add(data, sub(size, 0x20)), 0) // the last word's padding
                        mstore(add(data, 0x04), requestId)
                        mstore(add(data, 0x24), byte(24, word))
                        mstore(add(data, 0x44), 0x60)
                        mstore(add(data, 0x64), length)
                        calldatacopy(add(data, 0x84), add(item, 59), length)
                        // Exactly the requested gas, checked just before the CALL (as {_callWithExactGas}).
                        let gasLimit := shr(224, word)
                        let available := sub(gas(), _GAS_FOR_CALL_EXACT_CHECK)
                        if or(lt(gas(), _GAS_FOR_CALL_EXACT_CHECK), iszero(gt(sub(available, div(available, 64)), gasLimit))) {
                            mstore(add(out, 0x1a0), requestId) // starved: reverts after the loop
                            break
                        }
                        let before := gas()
                        ok := call(gasLimit, requester, 0, data, size, 0, 0)
                        mstore(add(out, 0x20), sub(before, gas()))
                    }
                    mstore(out, byte(24, word))
                    log3(out, 0x20, mload(add(out, 0x60)), requestId, mload(add(out, 0xa0)))
                    if iszero(ok) { log2(add(out, 0x20), 0x20, mload(add(out, 0x40)), requestId) }
                    fees := add(fees, and(shr(128, word), 0xffffffffffffffffffffffff))
                    delivered := add(delivered, 1)
                }
                default {
                    mstore(frame, skip)
                    log2(frame, 0x20, mload(add(frame, 0x80)), requestId)
                }
                item := add(add(item, 59), and(shr(40, word), 0xffff))
            }
        }
    }

    /// @dev Writes the memory frame {_deliverPackedItems} reuses for every item, above the free memory pointer
    ///      (never allocated): 0x00 Fulfilled's data (status) | 0x20 CallbackFailed's data (gas used) | 0x40
    ///      CallbackFailed's topic | 0x60 Fulfilled's topic | 0x80 FulfillmentSkipped's topic | 0xa0 signer |
    ///      0xc0 {requestIdPrefix} | 0xe0 the job of the last authorization record read | 0x100 its answer: 0 not
    ///      read yet, else 1 + the skip reason it gives (0 or SKIP_UNAUTHORIZED_SIGNER) | 0x124 the record's key
    ///      words: signer, jobId, measurement | 0x1a0 a request whose callback
    ///      the transaction cannot give its gas to (0: none) | 0x1c0 the current item's requester | 0x1e0 its
    ///      jobId (both kept for the next item's SAME_* flags) | 0x200 handleFulfillment calldata.
    function _deliveryFrame(address signer, bytes32 measurement) private view returns (uint256 frame) {
        uint256 prefix = requestIdPrefix();
        bytes32 fulfilledTopic = Fulfilled.selector;
        bytes32 skippedTopic = FulfillmentSkipped.selector;
        bytes32 callbackFailedTopic = CallbackFailed.selector;
        bytes4 callbackSelector = ITeeBridgeConsumer.handleFulfillment.selector;
        assembly ("memory-safe") {
            frame := mload(0x40)
            mstore(add(frame, 0x40), callbackFailedTopic)
            mstore(add(frame, 0x60), fulfilledTopic)
            mstore(add(frame, 0x80), skippedTopic)
            mstore(add(frame, 0xa0), signer)
            mstore(add(frame, 0xc0), prefix)
            mstore(add(frame, 0x100), 0)
            mstore(add(frame, 0x124), signer)
            mstore(add(frame, 0x164), measurement)
            mstore(add(frame, 0x1a0), 0)
            mstore(add(frame, 0x200), callbackSelector)
        }
    }

    /// @dev The request {_deliverPackedItems} stopped at because the transaction cannot give its callback the
    ///      requested gas (0: none).
    function _starved(uint256 frame) private pure returns (bytes32 requestId) {
        assembly ("memory-safe") {
            requestId := mload(add(frame, 0x1a0))
        }
    }

    /// @dev The checks against storage: 0 and the stored commitment when the request is pending, matches its
    ///      commitment and has not expired; else a SKIP_* reason.
    function _checkPending(Request memory req) private view returns (uint8 skip, bytes32 stored) {
        stored = commitments[req.requestId];
        if (stored == 0) return (SKIP_NOT_PENDING, stored);
        if (stored != _commitment(req)) return (SKIP_COMMITMENT_MISMATCH, stored);
        if (block.timestamp > req.expiry) return (SKIP_EXPIRED, stored);
    }

    /// @dev Effects first (the commitment is deleted), then the callback with exactly the requested gas.
    function _deliver(Request memory req, uint8 status, bytes calldata result, address signer) private {
        delete commitments[req.requestId];
        (bool ok, uint256 gasUsed) =
            _callWithExactGas(req.requestId, req.callbackGasLimit, req.requester, _callbackData(req, status, result));
        emit Fulfilled(req.requestId, signer, status);
        if (!ok) emit CallbackFailed(req.requestId, gasUsed);
    }

    /// @dev `abi.encodeCall(ITeeBridgeConsumer.handleFulfillment, (requestId, status, result))`, written above
    ///      the free memory pointer without moving it: a batch reuses the same memory for every callback.
    function _callbackData(Request memory req, uint8 status, bytes calldata result)
        private
        pure
        returns (bytes memory data)
    {
        bytes4 selector = ITeeBridgeConsumer.handleFulfillment.selector;
        assembly ("memory-safe") {
            data := mload(0x40)
            let body := add(data, 0x20)
            mstore(body, selector)
            mstore(add(body, 0x04), mload(req))
            mstore(add(body, 0x24), status)
            mstore(add(body, 0x44), 0x60)
            mstore(add(body, 0x64), result.length)
            let padded := and(add(result.length, 31), not(31))
            if padded { mstore(add(add(body, 0x84), sub(padded, 0x20)), 0) } // zero the last word's padding
            calldatacopy(add(body, 0x84), result.offset, result.length)
            mstore(data, add(0x84, padded))
        }
    }

    /// @dev EIP-712 digest of `FulfillmentBatch` over the packed items (the hash of the concatenated
    ///      `hashStruct(Fulfillment)` of each item, in order), and the memory address where it left each item's
    ///      commitment (one word per item, in order; allocated) for {_deliverPackedItems}. Reverts with
    ///      {MalformedBatch} for an empty, truncated or over-long `items`.
    function _batchDigest(bytes calldata items, bytes32 measurement)
        private
        view
        returns (bytes32 digest, uint256 commitmentsAt)
    {
        bytes32 typeHash = FULFILLMENT_TYPEHASH;
        uint256 hashesAt;
        uint256 count;
        uint256 malformedAt = type(uint256).max;
        {
            uint256 prefix = requestIdPrefix();
            assembly ("memory-safe") {
                commitmentsAt := mload(0x40)
                hashesAt := add(commitmentsAt, shl(5, div(items.length, _PACKED_ITEM_MIN))) // room for every item
                mstore(add(hashesAt, sub(hashesAt, commitmentsAt)), prefix) // the word before `pre` below
            }
        }
        assembly ("memory-safe") {
            let pre := add(add(hashesAt, sub(hashesAt, commitmentsAt)), 0x20) // the Request struct's seven words
            let scratch := add(pre, 0xe0) // hashStruct(Fulfillment)'s six words, and the result for its hash
            let end := add(items.offset, items.length)
            for { let item := items.offset } lt(item, end) { count := add(count, 1) } {
                let start := item
                let flags := byte(0, calldataload(item))
                // Unknown flags, or SAME_* on the first item (there is no previous one): malformed.
                if or(gt(flags, or(SAME_REQUESTER, SAME_JOB)), and(iszero(count), gt(flags, 0))) {
                    malformedAt := sub(start, items.offset)
                    break
                }
                mstore(pre, or(mload(sub(pre, 0x20)), shr(192, calldataload(add(item, 1))))) // prefix | number
                item := add(item, 9)
                if iszero(and(flags, SAME_REQUESTER)) {
                    mstore(add(pre, 0x20), shr(96, calldataload(item))) // requester
                    item := add(item, 20)
                }
                if iszero(and(flags, SAME_JOB)) {
                    mstore(add(pre, 0x40), calldataload(item)) // jobId
                    item := add(item, 32)
                }
                mstore(add(pre, 0x60), calldataload(item)) // inputHash
                let word := calldataload(add(item, 32)) // gas (4) | fee (12) | expiry (8) | status (1) | length (2)
                mstore(add(pre, 0x80), shr(224, word)) // callbackGasLimit
                mstore(add(pre, 0xa0), and(shr(128, word), 0xffffffffffffffffffffffff)) // fee
                mstore(add(pre, 0xc0), and(shr(64, word), 0xffffffffffffffff)) // expiry
                let length := and(shr(40, word), 0xffff)
                item := add(item, 59) // the result
                if gt(add(item, length), end) {
                    malformedAt := sub(start, items.offset)
                    break
                }
                // The commitment: keccak256 of the Request struct's seven words (as {_commitment}).
                let commitment := keccak256(pre, 0xe0)
                mstore(add(commitmentsAt, shl(5, count)), commitment)
                // hashStruct(Fulfillment(requestId, commitment, status, keccak256(result), measurement))
                calldatacopy(scratch, item, length)
                mstore(add(scratch, 0x80), keccak256(scratch, length))
                mstore(scratch, typeHash)
                mstore(add(scratch, 0x20), mload(pre))
                mstore(add(scratch, 0x40), commitment)
                mstore(add(scratch, 0x60), byte(24, word))
                mstore(add(scratch, 0xa0), measurement)
                mstore(add(hashesAt, shl(5, count)), keccak256(scratch, 0xc0))
                item := add(item, length)
            }
            if iszero(count) { malformedAt := 0 }
            mstore(0x40, add(commitmentsAt, shl(5, count))) // keep the commitments, free the rest
        }
        if (malformedAt != type(uint256).max) revert MalformedBatch(malformedAt);
        bytes32 batchTypeHash = FULFILLMENT_BATCH_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            mstore(0x00, batchTypeHash)
            mstore(0x20, keccak256(hashesAt, shl(5, count)))
            structHash := keccak256(0x00, 0x40)
        }
        digest = keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @dev The key of an authorization record: keccak256(abi.encode(signer, jobId, measurement)).
    function _authorizationKey(address signer, bytes32 jobId, bytes32 measurement) private pure returns (bytes32 key) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, signer)
            mstore(add(m, 0x20), jobId)
            mstore(add(m, 0x40), measurement)
            key := keccak256(m, 0x60)
        }
    }

    /// @dev Reverts with the error {fulfill} would give for {fulfillPacked}'s `failure`.
    function _revertPackedCall(uint256 failure, bytes32 requestId, uint256 word, address signer) private view {
        if (failure == SKIP_COMMITMENT_MISMATCH) revert CommitmentMismatch(requestId);
        if (failure == SKIP_EXPIRED) revert RequestExpired(requestId, uint64(word >> 24));
        if (failure == SKIP_BAD_SIGNATURE) revert InvalidSignature(requestId);
        if (failure == SKIP_UNAUTHORIZED_SIGNER) revert UnauthorizedSigner(requestId, signer);
        if (failure == _STARVED) revert InsufficientGasForCallback(requestId);
        if (failure == _PAYMENT_FAILED) revert PaymentFailed(msg.sender, uint96(word >> 88));
        revert MalformedItem();
    }

    function _commitment(Request memory req) private pure returns (bytes32 commitment) {
        // abi.encode of the seven fields is exactly the struct's seven words in memory.
        assembly ("memory-safe") {
            commitment := keccak256(req, 0xe0)
        }
    }

    /// @dev ecrecover for a compact (r, vs) signature; returns address(0) for any invalid signature.
    function _recover(bytes32 digest, bytes32 r, bytes32 vs) private pure returns (address) {
        bytes32 s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
        if (uint256(s) > _HALF_CURVE_ORDER) return address(0);
        uint8 v = uint8((uint256(vs) >> 255) + 27);
        return ecrecover(digest, v, r, s);
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev {domainSeparator} and {requestIdPrefix} with one chain id check.
    function _domain() private view returns (bytes32 separator, uint256 prefix) {
        if (block.chainid == _cachedChainId) return (_cachedDomainSeparator, _cachedRequestIdPrefix);
        return (_buildDomainSeparator(), _buildRequestIdPrefix());
    }

    function _buildRequestIdPrefix() private view returns (uint256) {
        return uint256(keccak256(abi.encode(block.chainid, address(this)))) & ~uint256(type(uint64).max);
    }
}
