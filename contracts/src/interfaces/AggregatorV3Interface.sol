// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title AggregatorV3Interface
/// @notice The price feed interface Chainlink consumers read, written from its well-known definition so that
///         a contract written against Chainlink's feeds reads a teebridge {PriceFeed} unchanged.
interface AggregatorV3Interface {
    /// @notice Number of decimals of the answer: a price is `answer / 10**decimals()`.
    /// @return The decimals.
    function decimals() external view returns (uint8);

    /// @notice A human-readable description of the feed, e.g. "ETH / USD".
    /// @return The description.
    function description() external view returns (string memory);

    /// @notice The version of the feed implementation.
    /// @return The version.
    function version() external view returns (uint256);

    /// @notice The data of one round.
    /// @param _roundId The round id.
    /// @return roundId The round id.
    /// @return answer The price.
    /// @return startedAt When the round started.
    /// @return updatedAt When the answer was last updated.
    /// @return answeredInRound The round in which the answer was computed.
    function getRoundData(uint80 _roundId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    /// @notice The data of the latest round.
    /// @return roundId The round id.
    /// @return answer The price.
    /// @return startedAt When the round started.
    /// @return updatedAt When the answer was last updated.
    /// @return answeredInRound The round in which the answer was computed.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
