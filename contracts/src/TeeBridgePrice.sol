// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IEnclaveRegistry} from "./interfaces/IEnclaveRegistry.sol";

/// @title TeeBridgePrice
/// @notice Verification of enclave-signed price reports (docs/price-feeds.md), for push feeds ({PriceFeed})
///         and for same-transaction (pull) use inside a consumer's own call.
/// @dev EIP-712, domain {name: "teebridge", version: "1", chainId: block.chainid, verifyingContract: the
///      EnclaveRegistry}. The normative encoder is verifier/price_report.py.
library TeeBridgePrice {
    /// @notice One observed price, as an enclave signs it.
    struct PriceReport {
        bytes32 feedId;
        int256 answer;
        uint8 decimals;
        uint64 observedAt;
        uint16 sources;
        bytes32 measurement;
    }

    /// @notice EIP-712 type hash of {PriceReport}.
    bytes32 internal constant PRICE_REPORT_TYPEHASH = keccak256(
        "PriceReport(bytes32 feedId,int256 answer,uint8 decimals,uint64 observedAt,uint16 sources,bytes32 measurement)"
    );
    /// @notice The job whose approved measurements may sign price reports: keccak256("price@1").
    bytes32 internal constant PRICE_JOB_ID = keccak256("price@1");
    /// @notice How far in the future (seconds, against block.timestamp) a report's observedAt may lie.
    uint256 internal constant MAX_FUTURE_SKEW = 15;

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("teebridge");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and are refused.
    uint256 private constant _HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    error WrongFeed(bytes32 expected, bytes32 actual);
    error StaleReport(uint64 observedAt, uint256 maxAge);
    error FutureReport(uint64 observedAt, uint256 blockTimestamp);
    error InvalidSignature();
    error UnauthorizedSigner(address signer);

    /// @notice Verify a signed report for same-transaction use: feed, freshness, signature, authorization.
    /// @dev Does not check `report.decimals` or `report.sources`: a consumer that relies on them checks them.
    /// @param report The report.
    /// @param r The signature's r.
    /// @param vs The signature's s with v's parity in the top bit (EIP-2098).
    /// @param registry The enclave registry (the EIP-712 verifying contract).
    /// @param feedId The feed the consumer expects, keccak256("ETH/USD") for instance.
    /// @param maxAge Largest accepted `block.timestamp - observedAt`, in seconds.
    /// @return answer The price, scaled by 10**report.decimals.
    /// @return observedAt When the enclave observed it.
    function verify(
        PriceReport calldata report,
        bytes32 r,
        bytes32 vs,
        IEnclaveRegistry registry,
        bytes32 feedId,
        uint256 maxAge
    ) internal view returns (int256 answer, uint64 observedAt) {
        if (report.feedId != feedId) revert WrongFeed(feedId, report.feedId);
        observedAt = report.observedAt;
        checkNotFuture(observedAt);
        if (block.timestamp > observedAt && block.timestamp - observedAt > maxAge) {
            revert StaleReport(observedAt, maxAge);
        }
        checkSigner(report, r, vs, registry);
        answer = report.answer;
    }

    /// @notice Revert unless `observedAt` is at most {MAX_FUTURE_SKEW} seconds ahead of block.timestamp.
    /// @param observedAt The report's observation time.
    function checkNotFuture(uint64 observedAt) internal view {
        if (observedAt > block.timestamp + MAX_FUTURE_SKEW) revert FutureReport(observedAt, block.timestamp);
    }

    /// @notice Revert unless the report's signature recovers to a signer the registry authorizes for the
    ///         price job and the report's measurement.
    /// @param report The report.
    /// @param r The signature's r.
    /// @param vs The signature's compact s and v.
    /// @param registry The enclave registry.
    /// @return signer The authorized signer.
    function checkSigner(PriceReport calldata report, bytes32 r, bytes32 vs, IEnclaveRegistry registry)
        internal
        view
        returns (address signer)
    {
        signer = recover(digest(report, address(registry)), r, vs);
        if (signer == address(0)) revert InvalidSignature();
        if (!registry.isAuthorized(signer, PRICE_JOB_ID, report.measurement)) revert UnauthorizedSigner(signer);
    }

    /// @notice The EIP-712 digest an enclave signs for `report` on this chain and `registry`.
    /// @param report The report.
    /// @param registry The enclave registry.
    /// @return The digest.
    function digest(PriceReport calldata report, address registry) internal view returns (bytes32) {
        bytes32 domainSeparator =
            keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, registry));
        bytes32 structHash = keccak256(abi.encode(PRICE_REPORT_TYPEHASH, report));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @notice ecrecover for a compact (r, vs) signature; address(0) for an invalid or malleable one.
    /// @param hash The signed digest.
    /// @param r The signature's r.
    /// @param vs The signature's compact s and v.
    /// @return The signer, or address(0).
    function recover(bytes32 hash, bytes32 r, bytes32 vs) internal pure returns (address) {
        bytes32 s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
        if (uint256(s) > _HALF_CURVE_ORDER) return address(0);
        uint8 v = uint8((uint256(vs) >> 255) + 27);
        return ecrecover(hash, v, r, s);
    }
}
