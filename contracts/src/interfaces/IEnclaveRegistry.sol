// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IEnclaveRegistry
/// @notice What the Router asks of the registry before it accepts a fulfilment.
interface IEnclaveRegistry {
    /// @notice Whether `signer` is a live, unrevoked, attested enclave key running `measurement`,
    ///         and `measurement` is approved for `jobId`.
    /// @param signer The address recovered from the fulfilment signature.
    /// @param jobId The job the request asked for.
    /// @param measurement The measurement the signer claims in its signed fulfilment.
    /// @return True when the fulfilment may be accepted.
    function isAuthorized(address signer, bytes32 jobId, bytes32 measurement) external view returns (bool);
}
