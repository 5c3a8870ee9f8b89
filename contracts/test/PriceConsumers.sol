// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../src/interfaces/AggregatorV3Interface.sol";
import {IEnclaveRegistry} from "../src/interfaces/IEnclaveRegistry.sol";
import {TeeBridgePrice} from "../src/TeeBridgePrice.sol";

/// @title PullPriceConsumer
/// @notice Test consumer of the same-transaction path: verifies a signed report inside its own call.
contract PullPriceConsumer {
    /// @notice The registry whose signers are trusted.
    IEnclaveRegistry public immutable registry;
    /// @notice The feed this consumer prices with.
    bytes32 public immutable feedId;
    /// @notice The decimals it expects.
    uint8 public immutable expectedDecimals;
    /// @notice Largest accepted report age, in seconds.
    uint256 public immutable maxAge;

    /// @notice The last price a swap used.
    int256 public lastPrice;
    /// @notice When that price was observed.
    uint64 public lastObservedAt;

    error WrongDecimals(uint8 decimals);

    /// @notice A swap priced at `price`.
    event Swapped(int256 price, uint64 observedAt);

    /// @param registry_ The enclave registry.
    /// @param feedId_ The feed.
    /// @param decimals_ The expected decimals.
    /// @param maxAge_ The largest accepted report age.
    constructor(IEnclaveRegistry registry_, bytes32 feedId_, uint8 decimals_, uint256 maxAge_) {
        registry = registry_;
        feedId = feedId_;
        expectedDecimals = decimals_;
        maxAge = maxAge_;
    }

    /// @notice A swap that prices itself with a report verified in this very call.
    /// @param report The signed report.
    /// @param r The signature's r.
    /// @param vs The signature's compact s and v.
    function swap(TeeBridgePrice.PriceReport calldata report, bytes32 r, bytes32 vs) external {
        if (report.decimals != expectedDecimals) revert WrongDecimals(report.decimals);
        (int256 price, uint64 observedAt) = TeeBridgePrice.verify(report, r, vs, registry, feedId, maxAge);
        _swap(price, observedAt);
    }

    /// @notice The same call path without verification (a gas baseline for measurements only).
    /// @param report The report, taken on trust.
    function swapUnverified(TeeBridgePrice.PriceReport calldata report, bytes32, bytes32) external {
        if (report.decimals != expectedDecimals) revert WrongDecimals(report.decimals);
        _swap(report.answer, report.observedAt);
    }

    function _swap(int256 price, uint64 observedAt) private {
        lastPrice = price;
        lastObservedAt = observedAt;
        emit Swapped(price, observedAt);
    }
}

/// @title ChainlinkStyleConsumer
/// @notice Test consumer written strictly against Chainlink's interface, the way Chainlink's docs read a feed.
contract ChainlinkStyleConsumer {
    /// @notice The feed.
    AggregatorV3Interface public immutable feed;
    /// @notice Largest accepted answer age, in seconds.
    uint256 public immutable maxDelay;

    error InvalidPrice();
    error StaleRound();

    /// @param feed_ The feed.
    /// @param maxDelay_ The largest accepted answer age.
    constructor(AggregatorV3Interface feed_, uint256 maxDelay_) {
        feed = feed_;
        maxDelay = maxDelay_;
    }

    /// @notice The latest price with the checks a careful Chainlink consumer makes.
    /// @return price The price.
    /// @return priceDecimals The feed's decimals.
    function price() external view returns (int256, uint8 priceDecimals) {
        (uint80 roundId, int256 answer,, uint256 updatedAt, uint80 answeredInRound) = feed.latestRoundData();
        if (answer <= 0) revert InvalidPrice();
        if (updatedAt == 0 || answeredInRound < roundId) revert StaleRound();
        if (block.timestamp - updatedAt > maxDelay) revert StaleRound();
        return (answer, feed.decimals());
    }
}
