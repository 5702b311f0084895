"""Alias move to new version answering /predict, over 20 promotions: webhook vs polling.

The whole local stack runs as a user would run it (`aliasflow controller` as a process,
model servers started by the local runtime); the clock starts when
`set_registered_model_alias` returns and stops at the first /predict answer from the
new version. Results go to docs/performance.md.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import httpx
import pytest

from aliasflow_cli.stack import SAMPLE_RECORD, Stack, stop_model_servers_in
from controller.runtimes.netutil import free_port

PROMOTIONS = 20
POLL_INTERVAL = 5.0
REPO = Path(__file__).resolve().parent.parent


def _served_version(client: httpx.Client, endpoint: str) -> str | None:
    try:
        response = client.post(f"{endpoint}/predict", json={"records": [SAMPLE_RECORD]})
    except httpx.HTTPError:
        return None
    return str(response.json()["model"]["version"]) if response.status_code == 200 else None


def _measure(stack: Stack, endpoint: str, versions: tuple[str, str]) -> list[float]:
    latencies = []
    with httpx.Client(timeout=5, trust_env=False) as client:
        for index in range(PROMOTIONS):
            target = versions[(index + 1) % 2]
            returned = stack.promote(target)
            while _served_version(client, endpoint) != target:
                if time.monotonic() - returned > 60:
                    raise AssertionError(f"version {target} not served after 60 s")
                time.sleep(0.01)
            latencies.append(time.monotonic() - returned)
            # A random pause, so promotions land at every phase of the poll timer
            # instead of locking to one (which would report the worst case every time).
            time.sleep(0.5 + random.uniform(0, POLL_INTERVAL))
    return latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.mark.bench
@pytest.mark.parametrize("webhooks", [True, False], ids=["webhook", "polling"])
def test_alias_to_serving_latency(webhooks: bool, tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        REPO / "manifests",
        free_port(),
        free_port(),
        poll_interval=POLL_INTERVAL,
        webhooks=webhooks,
        controller_log=tmp_path / "controller.log",
    )
    try:
        stack.start()
        v1 = str(stack.train()["version"])
        v2 = str(stack.train()["version"])
        stack.promote(v1)
        row = stack.wait_serving("iris-local", v1)
        latencies = _measure(stack, str(row["endpoint"]), (v1, v2))
    finally:
        stack.stop()
        stop_model_servers_in(tmp_path)
    p50, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
    mode = "webhook" if webhooks else f"polling only (interval {POLL_INTERVAL:.0f} s)"
    line = f"| {mode} | {len(latencies)} | {p50:.2f} s | {p95:.2f} s | {max(latencies):.2f} s |"
    print(f"\nalias-to-serving, {mode}: p50 {p50:.2f} s, p95 {p95:.2f} s\n{line}")
    _record(mode, line)
    if webhooks:
        assert p50 < 1.5, f"webhook p50 {p50:.2f} s"
    else:
        assert max(latencies) < POLL_INTERVAL + 1.5 + 1.0, f"polling max {max(latencies):.2f} s"


def _record(mode: str, line: str) -> None:
    """Keep the latest row per mode in docs/performance.md's promotion table."""
    doc = REPO / "docs" / "performance.md"
    header = "## Alias move to serving (local runtime)"
    table_head = "| mode | promotions | p50 | p95 | max |\n| --- | --- | --- | --- | --- |"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if header not in text:
        text += (
            f"\n{header}\n\nFrom `set_registered_model_alias` returning to the first /predict "
            "answer from the new version (`make bench`, benchmarks/test_promotion_latency.py), "
            f"measured on the 2-core machine.\n\n{table_head}\n"
        )
    lines = [existing for existing in text.splitlines() if not existing.startswith(f"| {mode} |")]
    index = lines.index(table_head.splitlines()[1]) + 1
    lines.insert(index, line)
    doc.write_text("\n".join(lines) + "\n")
