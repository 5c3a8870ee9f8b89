// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IEnclaveRegistry} from "./interfaces/IEnclaveRegistry.sol";
import {IRouterAuthorizations} from "./interfaces/IRouterAuthorizations.sol";

/// @title EnclaveRegistry
/// @notice The on-chain verifier of teebridge: it knows which signing keys belong to attested enclaves,
///         which measurement each one runs, and which measurements are approved for which job.
/// @dev Registration is done by a gatekeeper that verified the enclave's attestation off-chain
///      (see docs/protocol.md, "Registration"). Every state change emits an event.
///      Governance: approving a measurement for a job is proposed, public for `governanceDelay` seconds,
///      then activated by anyone. Restrictive changes (withdrawing an approval, revoking a signer, raising
///      the minimum version) take effect at once. Each measurement carries a version fixed when it is
///      first proposed; raising `minimumVersion` stops every older image from registering again.
///      Mirror: once a Router is attached ({attachRouter}), every change that alters {isAuthorized} is pushed
///      into it in the same transaction, as one record per (signer, job, measurement), so the Router checks a
///      fulfilment's signer in its own storage. To keep those pushes bounded, a measurement has at most
///      `MAX_JOBS_PER_MEASUREMENT` approved jobs and `MAX_SIGNERS_PER_MEASUREMENT` registered signers.
contract EnclaveRegistry is IEnclaveRegistry {
    /// @notice The only chain id on which simulated (insecure, local-only) attestations can be enabled.
    uint256 public constant LOCAL_CHAIN_ID = 31337;
    /// @notice HPKE suite id of DHKEM(X25519, HKDF-SHA256) + ChaCha20-Poly1305 (32-byte public key).
    uint8 public constant SUITE_X25519 = 1;
    /// @notice HPKE suite id of ML-KEM-768 + X25519 (X-Wing) + ChaCha20-Poly1305 (1216-byte public key).
    uint8 public constant SUITE_MLKEM768_X25519 = 2;
    /// @notice The longest endpoint URL a signer may publish, in bytes.
    uint256 public constant MAX_ENDPOINT_LENGTH = 256;
    /// @notice The most jobs a measurement may be approved for at once.
    uint256 public constant MAX_JOBS_PER_MEASUREMENT = 32;
    /// @notice The most signers (registered, not revoked, not yet forgotten) a measurement may have at once.
    uint256 public constant MAX_SIGNERS_PER_MEASUREMENT = 64;

    struct Signer {
        bytes32 measurement;
        uint64 expiry;
        bool revoked;
        bool simulated;
        uint8 suites;
    }

    struct Proposal {
        uint64 version;
        uint64 eta;
    }

    /// @notice Seconds between proposing a measurement for a job and being able to activate it.
    uint64 public immutable governanceDelay;

    /// @notice The account that may change policy: gatekeeper, job approvals, the simulated flag.
    address public owner;
    /// @notice The account proposed by the owner, which must accept before it becomes owner.
    address public pendingOwner;
    /// @notice The account that registers signers after verifying their attestation.
    address public gatekeeper;
    /// @notice Whether signers registered from a simulated attestation are accepted (local chain only).
    bool public simulatedAttestationsAllowed;
    /// @notice The Router this registry pushes its authorizations into (zero: none attached).
    IRouterAuthorizations public router;
    /// @notice Images whose measurement version is below this may not register signers.
    uint64 public minimumVersion;
    /// @notice The version of each known measurement (0 = never proposed); fixed once set.
    mapping(bytes32 measurement => uint64 version) public measurementVersion;
    /// @notice Pending approvals: job => measurement => (version, earliest activation time).
    mapping(bytes32 jobId => mapping(bytes32 measurement => Proposal)) public proposals;

    mapping(address signer => Signer) private _signers;
    mapping(address signer => bytes) private _hpkeKeys;
    mapping(bytes32 jobId => mapping(bytes32 measurement => bool)) private _approved;
    mapping(address signer => string) private _endpoints;
    /// @dev The jobs each measurement is approved for, and each (job, measurement)'s index there plus one.
    mapping(bytes32 measurement => bytes32[]) private _jobsOf;
    mapping(bytes32 jobId => mapping(bytes32 measurement => uint256)) private _jobSlot;
    /// @dev The registered, unrevoked, unforgotten signers of each measurement, and each one's index plus one.
    mapping(bytes32 measurement => address[]) private _signersOf;
    mapping(address signer => uint256) private _signerSlot;
    /// @dev Whether any measurement was ever activated: a Router can only be attached before that.
    bool private _policyStarted;

    error NotOwner();
    error NotPendingOwner();
    error NotGatekeeper();
    error NotOwnerOrGatekeeper();
    error ZeroAddress();
    error SimulatedAttestationsNotAllowed();
    error SimulatedAttestationsOnlyOnLocalChain(uint256 chainId);
    error ExpiryInPast(uint64 expiry);
    error UnknownSigner(address signer);
    error SignerWasRevoked(address signer);
    error InvalidVersion();
    error VersionBelowMinimum(uint64 version, uint64 minimum);
    error VersionMismatch(bytes32 measurement, uint64 known, uint64 proposed);
    error NoProposal(bytes32 jobId, bytes32 measurement);
    error ProposalNotReady(uint64 eta);
    error UnknownMeasurement(bytes32 measurement);
    error MinimumVersionNotRaised(uint64 current, uint64 proposed);
    error InvalidKeyBundle();
    error EndpointTooLong(uint256 length, uint256 maximum);
    error RouterAlreadyAttached(address router);
    error PolicyAlreadyStarted();
    error RouterServesAnotherRegistry(address router);
    error TooManyJobsForMeasurement(bytes32 measurement);
    error TooManySignersForMeasurement(bytes32 measurement);
    error SignerNotExpired(address signer);

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event GatekeeperSet(address indexed previousGatekeeper, address indexed newGatekeeper);
    event SimulatedAttestationsAllowedSet(bool allowed);
    event JobMeasurementProposed(bytes32 indexed jobId, bytes32 indexed measurement, uint64 version, uint64 eta);
    event JobMeasurementProposalCancelled(bytes32 indexed jobId, bytes32 indexed measurement);
    event JobMeasurementSet(bytes32 indexed jobId, bytes32 indexed measurement, bool approved);
    event MinimumVersionRaised(uint64 previous, uint64 minimum);
    event SignerRegistered(
        address indexed signer, bytes32 indexed measurement, uint64 expiry, bool simulated, bytes hpkeKeys
    );
    event SignerRevoked(address indexed signer);
    event SignerEndpointSet(address indexed signer, string endpoint);
    event RouterAttached(address indexed router);
    event SignerForgotten(address indexed signer);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @param initialOwner The policy owner.
    /// @param initialGatekeeper The account allowed to register signers.
    /// @param governanceDelay_ Seconds a proposed approval waits before it can be activated.
    constructor(address initialOwner, address initialGatekeeper, uint64 governanceDelay_) {
        if (initialOwner == address(0) || initialGatekeeper == address(0)) revert ZeroAddress();
        governanceDelay = governanceDelay_;
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

    /// @notice Attach the Router this registry serves: from now on every authorization change is pushed into it.
    /// @dev Once only, and before any measurement is activated, so the Router never misses a record. The
    ///      Router must name this registry as its own.
    /// @param router_ The Router.
    function attachRouter(IRouterAuthorizations router_) external onlyOwner {
        if (address(router) != address(0)) revert RouterAlreadyAttached(address(router));
        if (_policyStarted) revert PolicyAlreadyStarted();
        if (address(router_) == address(0)) revert ZeroAddress();
        (bool ok, bytes memory answer) = address(router_).staticcall(abi.encodeWithSignature("registry()"));
        if (!ok || answer.length != 32 || abi.decode(answer, (address)) != address(this)) {
            revert RouterServesAnotherRegistry(address(router_));
        }
        router = router_;
        emit RouterAttached(address(router_));
        if (simulatedAttestationsAllowed) router_.setSimulatedAttestationsAllowed(true);
    }

    /// @notice Allow or forbid signers registered from simulated attestations.
    /// @dev Enabling is refused on every chain but the local one (31337): a simulated quote proves nothing.
    /// @param allowed Whether simulated signers are accepted.
    function setSimulatedAttestationsAllowed(bool allowed) external onlyOwner {
        if (allowed && block.chainid != LOCAL_CHAIN_ID) revert SimulatedAttestationsOnlyOnLocalChain(block.chainid);
        simulatedAttestationsAllowed = allowed;
        emit SimulatedAttestationsAllowedSet(allowed);
        if (address(router) != address(0)) router.setSimulatedAttestationsAllowed(allowed);
    }

    /// @notice Propose approving `measurement` (an image of version `version`) for `jobId`.
    /// @dev Takes effect only through {activateJobMeasurement}, `governanceDelay` seconds later, so everyone
    ///      sees it coming. A measurement's version is fixed by its first proposal.
    /// @param jobId keccak256("name@version") of the job.
    /// @param measurement The enclave measurement (see docs/protocol.md).
    /// @param version The image version; at least `minimumVersion`.
    function proposeJobMeasurement(bytes32 jobId, bytes32 measurement, uint64 version) external onlyOwner {
        if (version == 0) revert InvalidVersion();
        if (version < minimumVersion) revert VersionBelowMinimum(version, minimumVersion);
        uint64 known = measurementVersion[measurement];
        if (known != 0 && known != version) revert VersionMismatch(measurement, known, version);
        uint64 eta = uint64(block.timestamp) + governanceDelay;
        proposals[jobId][measurement] = Proposal({version: version, eta: eta});
        emit JobMeasurementProposed(jobId, measurement, version, eta);
    }

    /// @notice Drop a pending proposal before it is activated.
    /// @param jobId The job.
    /// @param measurement The measurement.
    function cancelJobMeasurementProposal(bytes32 jobId, bytes32 measurement) external onlyOwner {
        if (proposals[jobId][measurement].eta == 0) revert NoProposal(jobId, measurement);
        delete proposals[jobId][measurement];
        emit JobMeasurementProposalCancelled(jobId, measurement);
    }

    /// @notice Activate a proposal whose delay has passed. Anyone may call it.
    /// @param jobId The job.
    /// @param measurement The measurement.
    function activateJobMeasurement(bytes32 jobId, bytes32 measurement) external {
        Proposal memory p = proposals[jobId][measurement];
        if (p.eta == 0) revert NoProposal(jobId, measurement);
        if (block.timestamp < p.eta) revert ProposalNotReady(p.eta);
        if (p.version < minimumVersion) revert VersionBelowMinimum(p.version, minimumVersion);
        delete proposals[jobId][measurement];
        measurementVersion[measurement] = p.version;
        _policyStarted = true;
        if (_approved[jobId][measurement]) {
            emit JobMeasurementSet(jobId, measurement, true); // approved before: nothing else changes
            return;
        }
        bytes32[] storage jobs = _jobsOf[measurement];
        if (jobs.length == MAX_JOBS_PER_MEASUREMENT) revert TooManyJobsForMeasurement(measurement);
        jobs.push(jobId);
        _jobSlot[jobId][measurement] = jobs.length;
        _approved[jobId][measurement] = true;
        emit JobMeasurementSet(jobId, measurement, true);
        _pushJob(jobId, measurement, true);
    }

    /// @notice Withdraw a measurement's approval for a job, at once (an emergency or a retirement).
    /// @param jobId The job.
    /// @param measurement The measurement.
    function withdrawJobMeasurement(bytes32 jobId, bytes32 measurement) external onlyOwner {
        _approved[jobId][measurement] = false;
        emit JobMeasurementSet(jobId, measurement, false);
        uint256 slot = _jobSlot[jobId][measurement];
        if (slot == 0) return; // was not approved
        bytes32[] storage jobs = _jobsOf[measurement];
        bytes32 last = jobs[jobs.length - 1];
        jobs[slot - 1] = last;
        _jobSlot[last][measurement] = slot;
        jobs.pop();
        delete _jobSlot[jobId][measurement];
        _pushJob(jobId, measurement, false);
    }

    /// @notice Refuse registration to every image older than `version`, at once. Only ever increases.
    /// @param version The new minimum image version.
    function raiseMinimumVersion(uint64 version) external onlyOwner {
        if (version <= minimumVersion) revert MinimumVersionNotRaised(minimumVersion, version);
        emit MinimumVersionRaised(minimumVersion, version);
        minimumVersion = version;
    }

    // ------------------------------------------------------------------ signers

    /// @notice Register (or re-register, to renew) an attested enclave signing key.
    /// @dev Called by the gatekeeper after it verified the enclave's quote and its report-data binding.
    ///      The measurement must have been approved for some job (so its version is known) and its
    ///      version must not be below `minimumVersion`: a rolled-back image cannot register. A revoked
    ///      signer can never be registered again: the enclave must generate a new key.
    /// @param signer The enclave's secp256k1 address.
    /// @param measurement The measurement the attestation proved.
    /// @param expiry Unix time after which the registration is no longer valid.
    /// @param simulated Whether the attestation was a simulated one.
    /// @param hpkeKeys The enclave's HPKE key bundle, `suite || publicKey` per accepted suite in ascending
    ///        suite order (docs/protocol.md, "Key bundle"); requesters encrypt inputs to these keys.
    function registerSigner(
        address signer,
        bytes32 measurement,
        uint64 expiry,
        bool simulated,
        bytes calldata hpkeKeys
    ) external {
        _registerSigner(signer, measurement, expiry, simulated, hpkeKeys);
    }

    /// @notice {registerSigner}, and publish the URL where the enclave's coprocessor API answers, in one call.
    /// @dev The endpoint is advisory: relayers use it to find enclaves (`--discover`), and check that the
    ///      enclave there holds `signer`'s key before sending it work. It grants nothing: every fulfilment
    ///      is still checked on chain by {isAuthorized}. An empty endpoint clears a published one.
    /// @param signer The enclave's secp256k1 address.
    /// @param measurement The measurement the attestation proved.
    /// @param expiry Unix time after which the registration is no longer valid.
    /// @param simulated Whether the attestation was a simulated one.
    /// @param hpkeKeys The enclave's HPKE key bundle (see {registerSigner}).
    /// @param endpoint The coprocessor's public base URL, e.g. `https://enclave-1.example.org`; at most
    ///        `MAX_ENDPOINT_LENGTH` bytes.
    function registerSignerWithEndpoint(
        address signer,
        bytes32 measurement,
        uint64 expiry,
        bool simulated,
        bytes calldata hpkeKeys,
        string calldata endpoint
    ) external {
        _registerSigner(signer, measurement, expiry, simulated, hpkeKeys);
        _setEndpoint(signer, endpoint);
    }

    /// @notice Publish (or change, or clear with "") the URL where a registered signer's coprocessor answers.
    /// @dev Callable by the gatekeeper or the owner, for a registered signer that was not revoked. Advisory
    ///      only, like the endpoint of {registerSignerWithEndpoint}.
    /// @param signer The registered signer.
    /// @param endpoint The coprocessor's public base URL; at most `MAX_ENDPOINT_LENGTH` bytes.
    function setSignerEndpoint(address signer, string calldata endpoint) external {
        if (msg.sender != owner && msg.sender != gatekeeper) revert NotOwnerOrGatekeeper();
        Signer storage s = _signers[signer];
        if (s.expiry == 0) revert UnknownSigner(signer);
        if (s.revoked) revert SignerWasRevoked(signer);
        _setEndpoint(signer, endpoint);
    }

    /// @dev The checks and effects of {registerSigner}.
    function _registerSigner(
        address signer,
        bytes32 measurement,
        uint64 expiry,
        bool simulated,
        bytes calldata hpkeKeys
    ) private {
        if (msg.sender != gatekeeper) revert NotGatekeeper();
        if (signer == address(0)) revert ZeroAddress();
        if (expiry <= block.timestamp) revert ExpiryInPast(expiry);
        if (simulated && !simulatedAttestationsAllowed) revert SimulatedAttestationsNotAllowed();
        if (_signers[signer].revoked) revert SignerWasRevoked(signer);
        uint64 version = measurementVersion[measurement];
        if (version == 0) revert UnknownMeasurement(measurement);
        if (version < minimumVersion) revert VersionBelowMinimum(version, minimumVersion);
        uint8 suites = _suitesOf(hpkeKeys);
        bytes32 previous = _signers[signer].measurement;
        if (_signerSlot[signer] != 0 && previous != measurement) _forget(signer, previous);
        if (_signerSlot[signer] == 0) {
            address[] storage peers = _signersOf[measurement];
            if (peers.length == MAX_SIGNERS_PER_MEASUREMENT) revert TooManySignersForMeasurement(measurement);
            peers.push(signer);
            _signerSlot[signer] = peers.length;
        }
        _signers[signer] =
            Signer({measurement: measurement, expiry: expiry, revoked: false, simulated: simulated, suites: suites});
        _hpkeKeys[signer] = hpkeKeys;
        emit SignerRegistered(signer, measurement, expiry, simulated, hpkeKeys);
        if (address(router) != address(0)) {
            router.setAuthorizations(signer, measurement, _jobsOf[measurement], expiry, simulated);
        }
    }

    /// @dev Stores a signer's endpoint (length-checked) and emits {SignerEndpointSet}.
    function _setEndpoint(address signer, string calldata endpoint) private {
        if (bytes(endpoint).length > MAX_ENDPOINT_LENGTH) {
            revert EndpointTooLong(bytes(endpoint).length, MAX_ENDPOINT_LENGTH);
        }
        _endpoints[signer] = endpoint;
        emit SignerEndpointSet(signer, endpoint);
    }

    /// @notice Revoke a signer at once and for good; its fulfilments are refused from the next block on.
    /// @param signer The signer to revoke.
    function revokeSigner(address signer) external {
        if (msg.sender != owner && msg.sender != gatekeeper) revert NotOwnerOrGatekeeper();
        Signer storage s = _signers[signer];
        if (s.expiry == 0) revert UnknownSigner(signer);
        s.revoked = true;
        emit SignerRevoked(signer);
        if (_signerSlot[signer] != 0) _forget(signer, s.measurement);
    }

    /// @notice Drop an expired signer from its measurement's list (and the Router's records), freeing its place
    ///         under `MAX_SIGNERS_PER_MEASUREMENT`. Anyone may call it; it changes no one's authorization.
    /// @param signer An expired signer.
    function forgetExpiredSigner(address signer) external {
        Signer storage s = _signers[signer];
        if (s.expiry == 0) revert UnknownSigner(signer);
        if (s.expiry > block.timestamp) revert SignerNotExpired(signer);
        if (_signerSlot[signer] != 0) _forget(signer, s.measurement);
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
    /// @return hpkeKeys The enclave's HPKE key bundle.
    function signerInfo(address signer)
        external
        view
        returns (bytes32 measurement, uint64 expiry, bool revoked, bool simulated, bytes memory hpkeKeys)
    {
        Signer storage s = _signers[signer];
        return (s.measurement, s.expiry, s.revoked, s.simulated, _hpkeKeys[signer]);
    }

    /// @notice The jobs `measurement` is approved for (at most `MAX_JOBS_PER_MEASUREMENT`), in no set order.
    /// @param measurement The measurement.
    /// @return The job ids.
    function jobsOf(bytes32 measurement) external view returns (bytes32[] memory) {
        return _jobsOf[measurement];
    }

    /// @notice The signers registered with `measurement` that were neither revoked nor forgotten (at most
    ///         `MAX_SIGNERS_PER_MEASUREMENT`; an expired one stays until {forgetExpiredSigner}), in no set order.
    /// @param measurement The measurement.
    /// @return The signer addresses.
    function signersOf(bytes32 measurement) external view returns (address[] memory) {
        return _signersOf[measurement];
    }

    /// @notice The URL a signer's coprocessor published (advisory: see {registerSignerWithEndpoint}).
    /// @param signer The signer address.
    /// @return endpoint The base URL, or "" if none was published. Check {signerInfo} for liveness.
    function signerEndpoint(address signer) external view returns (string memory endpoint) {
        return _endpoints[signer];
    }

    /// @notice The HPKE suites a signer's enclave accepts, as a mask: bit `1 << suite` per suite id.
    /// @param signer The signer address.
    /// @return mask 0 for an unknown signer; else e.g. `(1 << SUITE_X25519) | (1 << SUITE_MLKEM768_X25519)`.
    function hpkeSuites(address signer) external view returns (uint256 mask) {
        return _signers[signer].suites;
    }

    /// @dev Removes `signer` from `measurement`'s signers and its records from the Router.
    function _forget(address signer, bytes32 measurement) private {
        address[] storage peers = _signersOf[measurement];
        uint256 slot = _signerSlot[signer];
        address last = peers[peers.length - 1];
        peers[slot - 1] = last;
        _signerSlot[last] = slot;
        peers.pop();
        delete _signerSlot[signer];
        emit SignerForgotten(signer);
        if (address(router) != address(0)) router.setAuthorizations(signer, measurement, _jobsOf[measurement], 0, false);
    }

    /// @dev Pushes one job's approval (or its withdrawal) for every signer of `measurement` into the Router.
    ///      At most `MAX_SIGNERS_PER_MEASUREMENT` calls.
    function _pushJob(bytes32 jobId, bytes32 measurement, bool approved) private {
        if (address(router) == address(0)) return;
        address[] storage peers = _signersOf[measurement];
        bytes32[] memory jobs = new bytes32[](1);
        jobs[0] = jobId;
        for (uint256 i; i < peers.length; ++i) {
            Signer storage s = _signers[peers[i]];
            if (approved) router.setAuthorizations(peers[i], measurement, jobs, s.expiry, s.simulated);
            else router.setAuthorizations(peers[i], measurement, jobs, 0, false);
        }
    }

    /// @dev Validates a key bundle (known suites, exact key lengths, ascending, at least one) and returns
    ///      its suite mask. At most one iteration per known suite, whatever the input.
    function _suitesOf(bytes calldata bundle) private pure returns (uint8 mask) {
        uint256 offset;
        uint8 previous;
        while (offset < bundle.length) {
            uint8 suite = uint8(bundle[offset]);
            uint256 keyLength;
            if (suite == SUITE_X25519) keyLength = 32;
            else if (suite == SUITE_MLKEM768_X25519) keyLength = 1216;
            else revert InvalidKeyBundle();
            if (suite <= previous) revert InvalidKeyBundle();
            offset += 1 + keyLength;
            if (offset > bundle.length) revert InvalidKeyBundle();
            mask |= uint8(1 << suite);
            previous = suite;
        }
        if (mask == 0) revert InvalidKeyBundle();
    }
}
