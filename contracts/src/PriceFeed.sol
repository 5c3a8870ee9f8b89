// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IEnclaveRegistry} from "./interfaces/IEnclaveRegistry.sol";
import {TeeBridgePrice} from "./TeeBridgePrice.sol";

/// @title PriceFeed
/// @notice A push price feed for one pair, updated by anyone with a report signed by an attested enclave,
///         and read through Chainlink's {AggregatorV3Interface}.
/// @dev Every accepted report is a new round (ids 1, 2, ...); startedAt = updatedAt = the report's observedAt
///      and answeredInRound = roundId. Relayers are untrusted: everything is checked against the signed report.
contract PriceFeed is AggregatorV3Interface {
    /// @dev One slot per round.
    struct Round {
        int192 answer;
        uint64 observedAt;
    }

    /// @notice The implementation version {version} reports.
    uint256 public constant VERSION = 1;

    /// @notice The registry that says which signers are attested and approved for the price job.
    IEnclaveRegistry public immutable registry;
    /// @notice keccak256 of the pair, e.g. keccak256("ETH/USD").
    bytes32 public immutable feedId;
    /// @notice The decimals every accepted report must carry.
    uint8 public immutable decimals;
    /// @notice The fewest exchange quotes a report's median may be made of.
    uint16 public immutable minSources;
    /// @notice Seconds after which {latestRoundDataChecked} calls the latest answer stale.
    uint256 public immutable heartbeat;

    /// @dev The latest round id and its observedAt share one slot, so an update reads one slot.
    uint80 private _latestRoundId;
    uint64 private _latestObservedAt;
    mapping(uint256 roundId => Round) private _rounds;
    string private _description;

    error ZeroAddress();
    error InvalidConfig();
    error DecimalsMismatch(uint8 expected, uint8 actual);
    error TooFewSources(uint16 sources, uint16 minimum);
    error NotNewer(uint64 observedAt, uint64 latestObservedAt);
    error AnswerOutOfRange(int256 answer);
    error NoDataPresent(uint80 roundId);
    error StalePrice(uint256 updatedAt, uint256 heartbeat);

    /// @notice Chainlink's event for a new answer.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    /// @notice Chainlink's event for a new round; `startedBy` is the enclave signer of the report.
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    /// @param registry_ The enclave registry.
    /// @param feedId_ keccak256 of the pair.
    /// @param decimals_ The decimals of the answer.
    /// @param minSources_ The fewest sources a report may have (at least 1).
    /// @param heartbeat_ Staleness threshold in seconds (at least 1).
    /// @param description_ A description, e.g. "ETH / USD".
    constructor(
        IEnclaveRegistry registry_,
        bytes32 feedId_,
        uint8 decimals_,
        uint16 minSources_,
        uint256 heartbeat_,
        string memory description_
    ) {
        if (address(registry_) == address(0)) revert ZeroAddress();
        if (minSources_ == 0 || heartbeat_ == 0) revert InvalidConfig();
        registry = registry_;
        feedId = feedId_;
        decimals = decimals_;
        minSources = minSources_;
        heartbeat = heartbeat_;
        _description = description_;
    }

    /// @notice Store a new round from an enclave-signed report. Anyone may call it.
    /// @dev Reverts unless the report is for this feed, has this feed's decimals, at least `minSources`
    ///      sources, an observedAt strictly after the latest report's and at most
    ///      {TeeBridgePrice.MAX_FUTURE_SKEW} seconds after this block (enclave and block clocks differ), and a
    ///      signature of a signer the registry authorizes. The round records min(observedAt, block.timestamp),
    ///      so a Chainlink-style consumer's `block.timestamp - updatedAt` never underflows.
    /// @param report The signed report.
    /// @param r The signature's r.
    /// @param vs The signature's s with v's parity in the top bit (EIP-2098).
    /// @return roundId The new round's id.
    function update(TeeBridgePrice.PriceReport calldata report, bytes32 r, bytes32 vs)
        external
        returns (uint80 roundId)
    {
        if (report.feedId != feedId) revert TeeBridgePrice.WrongFeed(feedId, report.feedId);
        if (report.decimals != decimals) revert DecimalsMismatch(decimals, report.decimals);
        if (report.sources < minSources) revert TooFewSources(report.sources, minSources);
        uint64 observedAt = report.observedAt;
        uint64 latestObservedAt = _latestObservedAt;
        if (observedAt <= latestObservedAt) revert NotNewer(observedAt, latestObservedAt);
        TeeBridgePrice.checkNotFuture(observedAt);
        int256 answer = report.answer;
        if (answer > type(int192).max || answer < type(int192).min) revert AnswerOutOfRange(answer);
        address signer = TeeBridgePrice.checkSigner(report, r, vs, registry);

        unchecked {
            roundId = _latestRoundId + 1;
        }
        // The round's time is never after this block, so `block.timestamp - updatedAt` cannot underflow in a
        // Chainlink-style consumer; the raw observation time still orders the reports.
        uint64 updatedAt = observedAt < block.timestamp ? observedAt : uint64(block.timestamp);
        _latestRoundId = roundId;
        _latestObservedAt = observedAt;
        _rounds[roundId] = Round({answer: int192(answer), observedAt: updatedAt});
        emit NewRound(roundId, signer, updatedAt);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }

    /// @inheritdoc AggregatorV3Interface
    function description() external view returns (string memory) {
        return _description;
    }

    /// @inheritdoc AggregatorV3Interface
    function version() external pure returns (uint256) {
        return VERSION;
    }

    /// @inheritdoc AggregatorV3Interface
    /// @dev Reverts {NoDataPresent} for round 0 and for a round not reached yet.
    function getRoundData(uint80 _roundId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        if (_roundId == 0 || _roundId > _latestRoundId) revert NoDataPresent(_roundId);
        return _round(_roundId);
    }

    /// @inheritdoc AggregatorV3Interface
    /// @dev Reverts {NoDataPresent} before the first update. Does not check staleness: see
    ///      {latestRoundDataChecked}.
    function latestRoundData()
        public
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        uint80 latest = _latestRoundId;
        if (latest == 0) revert NoDataPresent(0);
        return _round(latest);
    }

    /// @notice {latestRoundData}, but reverts {StalePrice} when the answer is older than `heartbeat` seconds.
    /// @return roundId The round id.
    /// @return answer The price.
    /// @return startedAt The report's observedAt.
    /// @return updatedAt The report's observedAt.
    /// @return answeredInRound The round id.
    function latestRoundDataChecked()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        (roundId, answer, startedAt, updatedAt, answeredInRound) = latestRoundData();
        if (block.timestamp > updatedAt && block.timestamp - updatedAt > heartbeat) {
            revert StalePrice(updatedAt, heartbeat);
        }
    }

    /// @notice The id of the latest round (0 before the first update).
    /// @return The round id.
    function latestRound() external view returns (uint256) {
        return _latestRoundId;
    }

    function _round(uint80 id) private view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory round = _rounds[id];
        return (id, round.answer, round.observedAt, round.observedAt, id);
    }
}
