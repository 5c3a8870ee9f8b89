"""The command line as a user runs it: `teebridge up` in one process, `teebridge request` from another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from eth_account import Account

from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS
from teebridge.stack import RELAYER_KEY

TEEBRIDGE = [sys.executable, "-m", "teebridge.cli"]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        assert process.poll() is None, process.stdout.read() if process.stdout else "teebridge up exited"
        time.sleep(0.1)
    raise AssertionError("teebridge up did not write its state file")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TEEBRIDGE, *args], capture_output=True, text=True, timeout=120)


def test_up_request_status_and_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "stack"
    record = tmp_path / "localhost.json"
    up = subprocess.Popen(
        [*TEEBRIDGE, "up", "--port", "0", "--workdir", str(workdir), "--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        state = _wait_for(workdir / "stack.json", up)
        state_file = str(workdir / "stack.json")

        confidential = run("request", "confidential.credit-score@1", "85000", "22000", "1", "52", "--state", state_file)
        assert confidential.returncode == 0, confidential.stderr
        assert "(encrypted)" in confidential.stdout and "status OK" in confidential.stdout
        score = int(confidential.stdout.strip().splitlines()[-1].removeprefix("answer: "))
        assert 300 <= score <= 850

        echo = run("request", "echo@1", "hello", "--plain", "--state", state_file)
        assert echo.returncode == 0, echo.stderr
        assert "(plain)" in echo.stdout and "0x68656c6c6f" in echo.stdout

        on_demand = run("request", "price@1", "ETH/USD", "8", "--plain", "--state", state_file)
        assert on_demand.returncode == 0, on_demand.stderr
        price, sources, _observed = on_demand.stdout.strip().splitlines()[-1].removeprefix("answer: ").split(", ")
        assert int(price) > 0 and int(sources) >= 3

        deadline = time.monotonic() + 20
        while "round" not in (listing := run("feeds", "list", "--state", state_file)).stdout:
            assert time.monotonic() < deadline, listing.stdout + listing.stderr
            time.sleep(0.2)
        assert "ETH/USD" in listing.stdout and "BTC/USD" in listing.stdout
        shown = run("feeds", "show", "ETH/USD", "--rounds", "3", "--state", state_file)
        assert shown.returncode == 0 and shown.stdout.count("ETH/USD") >= 1

        added = subprocess.run(
            [
                *TEEBRIDGE,
                "feeds",
                "add",
                "SOL/USD",
                "--heartbeat",
                "600",
                "--rpc-url",
                state["rpcUrl"],
                "--deployment",
                str(record),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TEEBRIDGE_DEPLOYER_KEY": DEV_KEYS[0]},
        )
        assert added.returncode == 0, added.stderr
        sol = json.loads(record.read_text())["feeds"]["SOL/USD"]
        feed = ChainClient(state["rpcUrl"], DEV_KEYS[3]).contract("PriceFeed", sol)
        assert feed.functions.description().call() == "SOL / USD" and feed.functions.heartbeat().call() == 600

        bad = run("request", "no.such@1", "--state", state_file)
        assert bad.returncode == 1 and "has no job no.such@1" in bad.stderr

        # `request` returns once the Fulfilled event is on-chain; the relayer records it a moment later.
        deadline = time.monotonic() + 20
        while "delivered 3" not in (status := run("status", "--state", state_file)).stdout:
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.2)
        assert status.returncode == 0 and "enclave" in status.stdout
        relayer_address = Account.from_key(RELAYER_KEY).address
        assert f"account   {relayer_address}: balance " in status.stdout, status.stdout
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=30)
    assert up.returncode == 0, out
    assert "RPC URL" in out and "Router" in out and "Funded test accounts" in out
    assert json.loads(record.read_text())["router"] == state["deployment"]["router"]
    # Everything it started is gone.
    for url in (state["rpcUrl"], state["coprocessorUrl"]):
        try:
            httpx.get(url, timeout=1)
            raise AssertionError(f"{url} still answers after Ctrl-C")
        except httpx.HTTPError:
            pass


def test_request_without_a_stack_says_what_to_do(tmp_path: Path) -> None:
    result = run("request", "echo@1", "x", "--state", str(tmp_path / "nothing.json"))
    assert result.returncode == 1 and "teebridge up" in result.stderr
