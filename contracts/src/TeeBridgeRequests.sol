// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title TeeBridgeRequests
/// @notice Helpers for consumer contracts: build request inputs (plain, with a secret set, with a result
///         key), derive job and secret set ids, and read fulfilment results.
/// @dev Byte layouts are those of docs/protocol.md, section 4. Sealed bodies are made off-chain (the SDK's
///      `encrypt_input`): a contract never sees plaintext it should not publish. Every function is pure.
library TeeBridgeRequests {
    /// @notice First byte of a plain body.
    bytes1 internal constant PLAIN = 0x00;
    /// @notice Option tag: the job may use the owner's secret set named next.
    bytes1 internal constant OPTION_SECRET_SET = 0x10;
    /// @notice Option tag: encrypt the result to the requester's public key that follows.
    bytes1 internal constant OPTION_RESULT_KEY = 0x11;
    /// @notice HPKE suite id of DHKEM(X25519, HKDF-SHA256) + ChaCha20-Poly1305.
    uint8 internal constant SUITE_X25519 = 1;
    /// @notice HPKE suite id of ML-KEM-768 + X25519 (X-Wing) + ChaCha20-Poly1305.
    uint8 internal constant SUITE_MLKEM768_X25519 = 2;

    /// @notice Status: the result is the job's output.
    uint8 internal constant STATUS_OK = 0;
    /// @notice Status: the input names a secret set this request may not use.
    uint8 internal constant STATUS_SECRET_UNAVAILABLE = 7;
    /// @notice Status: the input was sealed to an enclave key that is retired; encrypt again.
    uint8 internal constant STATUS_UNKNOWN_KEY = 8;

    error InvalidResultKey(uint8 suite, uint256 length);

    /// @notice `keccak256("name@version")`, the Router's job id.
    function jobId(string memory nameAtVersion) internal pure returns (bytes32) {
        return keccak256(bytes(nameAtVersion));
    }

    /// @notice The id a request names to use `owner`'s secret set `name` for `job` on chain `chainId`.
    function secretSetId(uint256 chainId, address owner, bytes32 job, string memory name)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(chainId, owner, job, keccak256(bytes(name))));
    }

    /// @notice A plain body: `0x00 || payload`.
    function plain(bytes memory payload) internal pure returns (bytes memory) {
        return abi.encodePacked(PLAIN, payload);
    }

    /// @notice `body` (plain, or sealed off-chain) preceded by a secret set option.
    /// @dev A body sealed off-chain must have been sealed with these same options (they are in its HPKE info).
    function withSecretSet(bytes32 id, bytes memory body) internal pure returns (bytes memory) {
        return abi.encodePacked(OPTION_SECRET_SET, id, body);
    }

    /// @notice `body` preceded by options: a secret set (skipped when `id` is zero) and a result key.
    /// @param id The secret set id, or zero for none.
    /// @param suite The result key's suite (SUITE_X25519 or SUITE_MLKEM768_X25519).
    /// @param resultKey The requester's raw public key of that suite (32 or 1216 bytes).
    /// @param body The plain or sealed body.
    function withOptions(bytes32 id, uint8 suite, bytes memory resultKey, bytes memory body)
        internal
        pure
        returns (bytes memory)
    {
        uint256 expected = suite == SUITE_X25519 ? 32 : suite == SUITE_MLKEM768_X25519 ? 1216 : 0;
        if (expected == 0 || resultKey.length != expected) revert InvalidResultKey(suite, resultKey.length);
        bytes memory secretOption = id == bytes32(0) ? bytes("") : abi.encodePacked(OPTION_SECRET_SET, id);
        return abi.encodePacked(secretOption, OPTION_RESULT_KEY, suite, resultKey, body);
    }

    /// @notice The reason string of a non-OK result (`abi.encode(string)`); do not call on an encrypted one.
    function reason(bytes memory result) internal pure returns (string memory) {
        return abi.decode(result, (string));
    }
}
