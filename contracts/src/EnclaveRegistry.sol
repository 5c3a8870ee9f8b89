// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IEnclaveRegistry} from "./interfaces/IEnclaveRegistry.sol";

/// @title EnclaveRegistry
/// @notice The on-chain verifier of teebridge: it knows which signing keys belong to attested enclaves,
///         which measurement each one runs, and which measurements are approved for which job.
/// @dev Registration is done by a gatekeeper that verified the enclave's attestation off-chain
///      (see docs/protocol.md, "Registration"). Every state change emits an event.
contract EnclaveRegistry is IEnclaveRegistry {
    /// @notice The only chain id on which simulated (insecure, local-only) attestations can be enabled.
    uint256 public constant LOCAL_CHAIN_ID = 31337;

    struct Signer {
        bytes32 measurement;
        uint64 expiry;
        bool revoked;
        bool simulated;
    }

    /// @notice The account that may change policy: gatekeeper, job approvals, the simulated flag.
    address public owner;
    /// @notice The account proposed by the owner, which must accept before it becomes owner.
    address public pendingOwner;
    /// @notice The account that registers signers after verifying their attestation.
    address public gatekeeper;
    /// @notice Whether signers registered from a simulated attestation are accepted (local chain only).
    bool public simulatedAttestationsAllowed;

    mapping(address signer => Signer) private _signers;
    mapping(address signer => bytes) private _hpkePublicKeys;
    mapping(bytes32 jobId => mapping(bytes32 measurement => bool)) private _approved;

    error NotOwner();
    error NotPendingOwner();
    error NotGatekeeper();
    error NotOwnerOrGatekeeper();
    error ZeroAddress();
    error SimulatedAttestationsNotAllowed();
    error SimulatedAttestationsOnlyOnLocalChain(uint256 chainId);
    error ExpiryInPast(uint64 expiry);
    error UnknownSigner(address signer);

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event GatekeeperSet(address indexed previousGatekeeper, address indexed newGatekeeper);
    event SimulatedAttestationsAllowedSet(bool allowed);
    event JobMeasurementSet(bytes32 indexed jobId, bytes32 indexed measurement, bool approved);
    event SignerRegistered(
        address indexed signer, bytes32 indexed measurement, uint64 expiry, bool simulated, bytes hpkePublicKey
    );
    event SignerRevoked(address indexed signer);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @param initialOwner The policy owner.
    /// @param initialGatekeeper The account allowed to register signers.
    constructor(address initialOwner, address initialGatekeeper) {
        if (initialOwner == address(0) || initialGatekeeper == address(0)) revert ZeroAddress();
        owner = initialOwner;
        gatekeeper = initialGatekeeper;
        emit OwnershipTransferred(address(0), initialOwner);
        emit GatekeeperSet(address(0), initialGatekeeper);
    }

    // ------------------------------------------------------------------ policy

    /// @notice Propose a new owner; it takes effect when `newOwner` calls {acceptOwnership}.
    /// @param newOwner The proposed owner.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// @notice Accept a pending ownership transfer.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    /// @notice Replace the gatekeeper, the account that registers attested signers.
    /// @param newGatekeeper The new gatekeeper.
    function setGatekeeper(address newGatekeeper) external onlyOwner {
        if (newGatekeeper == address(0)) revert ZeroAddress();
        emit GatekeeperSet(gatekeeper, newGatekeeper);
        gatekeeper = newGatekeeper;
    }

    /// @notice Allow or forbid signers registered from simulated attestations.
    /// @dev Enabling is refused on every chain but the local one (31337): a simulated quote proves nothing.
    /// @param allowed Whether simulated signers are accepted.
    function setSimulatedAttestationsAllowed(bool allowed) external onlyOwner {
        if (allowed && block.chainid != LOCAL_CHAIN_ID) revert SimulatedAttestationsOnlyOnLocalChain(block.chainid);
        simulatedAttestationsAllowed = allowed;
        emit SimulatedAttestationsAllowedSet(allowed);
    }

    /// @notice Approve or withdraw a measurement for a job.
    /// @param jobId keccak256("name@version") of the job.
    /// @param measurement The enclave measurement (see docs/protocol.md).
    /// @param approved Whether signers running `measurement` may answer `jobId`.
    function setJobMeasurement(bytes32 jobId, bytes32 measurement, bool approved) external onlyOwner {
        _approved[jobId][measurement] = approved;
        emit JobMeasurementSet(jobId, measurement, approved);
    }

    // ------------------------------------------------------------------ signers

    /// @notice Register (or re-register) an attested enclave signing key.
    /// @dev Called by the gatekeeper after it verified the enclave's quote and its report-data binding.
    /// @param signer The enclave's secp256k1 address.
    /// @param measurement The measurement the attestation proved.
    /// @param expiry Unix time after which the registration is no longer valid.
    /// @param simulated Whether the attestation was a simulated one.
    /// @param hpkePublicKey The enclave's HPKE public key, for encrypting inputs to it.
    function registerSigner(
        address signer,
        bytes32 measurement,
        uint64 expiry,
        bool simulated,
        bytes calldata hpkePublicKey
    ) external {
        if (msg.sender != gatekeeper) revert NotGatekeeper();
        if (signer == address(0)) revert ZeroAddress();
        if (expiry <= block.timestamp) revert ExpiryInPast(expiry);
        if (simulated && !simulatedAttestationsAllowed) revert SimulatedAttestationsNotAllowed();
        _signers[signer] = Signer({measurement: measurement, expiry: expiry, revoked: false, simulated: simulated});
        _hpkePublicKeys[signer] = hpkePublicKey;
        emit SignerRegistered(signer, measurement, expiry, simulated, hpkePublicKey);
    }

    /// @notice Revoke a signer at once; its fulfilments are refused from the next block on.
    /// @param signer The signer to revoke.
    function revokeSigner(address signer) external {
        if (msg.sender != owner && msg.sender != gatekeeper) revert NotOwnerOrGatekeeper();
        Signer storage s = _signers[signer];
        if (s.expiry == 0) revert UnknownSigner(signer);
        s.revoked = true;
        emit SignerRevoked(signer);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IEnclaveRegistry
    function isAuthorized(address signer, bytes32 jobId, bytes32 measurement) external view returns (bool) {
        Signer storage s = _signers[signer];
        if (s.measurement != measurement || s.revoked || s.expiry <= block.timestamp) return false;
        if (s.simulated && !simulatedAttestationsAllowed) return false;
        return _approved[jobId][measurement];
    }

    /// @notice Whether `measurement` is approved for `jobId`.
    /// @param jobId The job.
    /// @param measurement The measurement.
    /// @return True when approved.
    function isApproved(bytes32 jobId, bytes32 measurement) external view returns (bool) {
        return _approved[jobId][measurement];
    }

    /// @notice Everything the registry knows about a signer.
    /// @param signer The signer address.
    /// @return measurement The registered measurement.
    /// @return expiry Unix time the registration ends (0 if never registered).
    /// @return revoked Whether it was revoked.
    /// @return simulated Whether it was registered from a simulated attestation.
    /// @return hpkePublicKey The enclave's HPKE public key.
    function signerInfo(address signer)
        external
        view
        returns (bytes32 measurement, uint64 expiry, bool revoked, bool simulated, bytes memory hpkePublicKey)
    {
        Signer storage s = _signers[signer];
        return (s.measurement, s.expiry, s.revoked, s.simulated, _hpkePublicKeys[signer]);
    }
}
