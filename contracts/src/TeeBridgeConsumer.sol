// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IRouter} from "./interfaces/IRouter.sol";
import {ITeeBridgeConsumer} from "./interfaces/ITeeBridgeConsumer.sol";

/// @title TeeBridgeConsumer
/// @notice Base contract for consumers: sends requests to the Router and accepts callbacks from it only.
/// @dev Inherit it, call {_sendRequest}, and implement {_onFulfillment}.
abstract contract TeeBridgeConsumer is ITeeBridgeConsumer {
    /// @notice The Router this consumer talks to.
    IRouter public immutable router;

    error OnlyRouter(address caller);

    /// @param router_ The teebridge Router.
    constructor(IRouter router_) {
        router = router_;
    }

    /// @notice Refunds of cancelled requests arrive here.
    receive() external payable virtual {}

    /// @inheritdoc ITeeBridgeConsumer
    function handleFulfillment(bytes32 requestId, uint8 status, bytes calldata result) external {
        if (msg.sender != address(router)) revert OnlyRouter(msg.sender);
        _onFulfillment(requestId, status, result);
    }

    /// @dev Send a request, paying `fee` from this contract's balance.
    function _sendRequest(bytes32 jobId, bytes memory input, uint32 callbackGasLimit, uint64 ttl, uint256 fee)
        internal
        returns (bytes32)
    {
        return router.request{value: fee}(jobId, input, callbackGasLimit, ttl);
    }

    /// @dev Called with the result of a request this contract sent. `status` 0 means success.
    function _onFulfillment(bytes32 requestId, uint8 status, bytes calldata result) internal virtual;
}
