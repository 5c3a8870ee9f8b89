// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IRouterAuthorizations
/// @notice What the enclave registry pushes into the Router it serves, so that a fulfilment checks its
///         signer against one storage slot of the Router's own (docs/protocol.md, section 9.4).
/// @dev Only the Router's registry may call these. The registry stays the source of truth: the Router's
///      {isAuthorized} answers exactly as the registry's does.
interface IRouterAuthorizations {
    /// @notice Authorize `signer`, running `measurement`, for each of `jobIds` until `expiry`; or remove those
    ///         authorizations when `expiry` is 0.
    /// @param signer The enclave's signing address.
    /// @param measurement The measurement it was registered with.
    /// @param jobIds The jobs concerned.
    /// @param expiry Unix time the registration ends; 0 removes the authorizations.
    /// @param simulated Whether the signer was registered from a simulated attestation.
    function setAuthorizations(
        address signer,
        bytes32 measurement,
        bytes32[] calldata jobIds,
        uint64 expiry,
        bool simulated
    ) external;

    /// @notice Mirror the registry's flag for signers registered from simulated attestations.
    /// @param allowed Whether such signers are accepted.
    function setSimulatedAttestationsAllowed(bool allowed) external;

    /// @notice Whether a fulfilment signed by `signer` for `jobId`, claiming `measurement`, is accepted now.
    /// @param signer The signing address.
    /// @param jobId The job.
    /// @param measurement The measurement in the signed fulfilment.
    /// @return True when the registry authorized it and it has neither expired nor been removed.
    function isAuthorized(address signer, bytes32 jobId, bytes32 measurement) external view returns (bool);
}
