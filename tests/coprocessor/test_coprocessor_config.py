"""CoprocessorConfig defaults, environment parsing and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from coprocessor.config import DEFAULT_DATA_DIR, CoprocessorConfig


def test_defaults() -> None:
    config = CoprocessorConfig(data_dir=Path("/x"))
    assert (config.host, config.port, config.attestation) == ("127.0.0.1", 0, "simulated")
    assert config.job_timeout_seconds == 10.0 and config.http_timeout_seconds == 5.0
    assert (config.max_result_bytes, config.max_batch, config.http_max_response_bytes) == (4096, 256, 1024 * 1024)


def test_from_env_reads_prefixed_variables_and_overrides_win() -> None:
    env = {
        "TEEBRIDGE_COPROCESSOR_DATA_DIR": "/tmp/d",
        "TEEBRIDGE_COPROCESSOR_PORT": "8123",
        "TEEBRIDGE_COPROCESSOR_JOB_TIMEOUT_SECONDS": "2.5",
        "TEEBRIDGE_COPROCESSOR_MAX_BATCH": "8",
        "TEEBRIDGE_COPROCESSOR_HOST": "",
    }
    config = CoprocessorConfig.from_env(env)
    assert config.data_dir == Path("/tmp/d") and config.port == 8123
    assert config.job_timeout_seconds == 2.5 and config.max_batch == 8 and config.host == "127.0.0.1"
    assert CoprocessorConfig.from_env(env, port=9, host=None).port == 9
    assert CoprocessorConfig.from_env({}).data_dir == DEFAULT_DATA_DIR


def test_from_env_names_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="TEEBRIDGE_COPROCESSOR_PORT"):
        CoprocessorConfig.from_env({"TEEBRIDGE_COPROCESSOR_PORT": "eighty"})


@pytest.mark.parametrize(
    "field,value", [("port", 70000), ("job_timeout_seconds", 0), ("max_batch", 0), ("http_timeout_seconds", -1.0)]
)
def test_invalid_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        CoprocessorConfig(data_dir=Path("/x"), **{field: value})  # type: ignore[arg-type]
