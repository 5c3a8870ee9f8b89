// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {PriceFeed} from "./PriceFeed.sol";
import {TeeBridgePrice} from "./TeeBridgePrice.sol";

/// @title PriceFeedBatcher
/// @notice Pushes signed reports to several {PriceFeed}s in one transaction, each on its own: an update that
///         reverts is reported in {UpdateFailed} and the others go on. Stateless; anyone may call it.
contract PriceFeedBatcher {
    /// @notice One feed update: the feed and the signed report for it.
    struct Update {
        PriceFeed feed;
        TeeBridgePrice.PriceReport report;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice The update of `feed` (item `index`) reverted with `reason` (the raw revert data).
    event UpdateFailed(address indexed feed, uint256 index, bytes reason);

    /// @notice Apply every update, independently.
    /// @dev Bounded by the calldata the caller pays for. A failing feed's revert data is copied into the event,
    ///      so a feed address chosen by the caller can only waste the caller's own gas.
    /// @param updates The updates.
    /// @return updated How many updates were accepted.
    function updateMany(Update[] calldata updates) external returns (uint256 updated) {
        for (uint256 i; i < updates.length; ++i) {
            Update calldata u = updates[i];
            try u.feed.update(u.report, u.r, u.vs) {
                unchecked {
                    ++updated;
                }
            } catch (bytes memory reason) {
                emit UpdateFailed(address(u.feed), i, reason);
            }
        }
    }
}
