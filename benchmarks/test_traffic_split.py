"""What a canary split and a shadow cost the model server's `/predict`.

One `aliasflow serve` of the iris pipeline (pinned to CPU 0, `wrk` to CPU 1), measured
in three configurations in the same run, on the same server: no split (the anchor), a
canary (another version of the same model) taking 50% of requests, and a shadow (that
version) mirrored on 100% of them. Configurations alternate round by round (the machine
is shared: other load only takes throughput away), each configuration's best round is
its capacity and the ratios compare best rounds to the anchor's; p50/p99 are medians.
The shadow's own outcomes (answered, dropped by the bounded queue) are read from
`/metrics` after each shadow round: mirroring never slows the clients, so under load
the shadow sheds what it cannot keep up with.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aliasflow_cli.devstack import MlflowServer
from benchmarks.conftest import BenchModel
from benchmarks.report import describe_machine, write_section
from benchmarks.serving import (
    LOAD_CPU,
    SERVER_CPU,
    Result,
    aliasflow_serve_argv,
    ensure_wrk,
    start_pinned,
    wrk_post,
)
from controller.runtimes.netutil import free_port, stop_process
from tests.fixtures_models import COLUMNS, iris_frame, log_iris_pipeline

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
CONCURRENCY = (1, 16)
CONFIGS = ("no split", "canary 50%", "shadow 100%")
TOKEN = "bench-admin-token"
SETTLE_SECONDS = 1.0
# Floors against the anchor, loose on purpose (a shared 2-core box): a canary costs
# smaller batches (two models never stack), a shadow a second prediction per request.
CANARY_FLOOR, SHADOW_FLOOR = 0.70, 0.30


@pytest.fixture(scope="module")
def two_versions(bench_mlflow: MlflowServer) -> tuple[BenchModel, str]:
    import mlflow

    mlflow.set_tracking_uri(bench_mlflow.url)
    name = "iris-traffic-bench"
    first, _ = log_iris_pipeline(name)
    second, _ = log_iris_pipeline(name, c=0.5)
    return BenchModel(bench_mlflow.url, name, first), f"models:/{name}/{second}"


def test_canary_and_shadow_against_no_split(
    two_versions: tuple[BenchModel, str], tmp_path: Path
) -> None:
    model, other = two_versions
    wrk = ensure_wrk()
    machine = describe_machine()
    port = free_port()
    server = start_pinned(
        "aliasflow serve",
        aliasflow_serve_argv(port),
        {
            "MODEL_URI": model.uri,
            "MLFLOW_TRACKING_URI": model.tracking_uri,
            "ALIASFLOW_ADMIN_TOKEN": TOKEN,
        },
        f"http://127.0.0.1:{port}/readyz",
        tmp_path / "server.log",
    )
    base = f"http://127.0.0.1:{port}"
    row = iris_frame()[0][COLUMNS].head(1).to_dict(orient="records")
    body = json.dumps({"records": row})
    results: dict[tuple[str, int], list[Result]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}  # server CPU µs per request (all threads)
    shadow_counts = {"ok": 0.0, "dropped": 0.0}
    try:
        with httpx.Client(base_url=base, timeout=60, trust_env=False) as admin:
            for config in CONFIGS:  # warm-up, and every version loaded once
                _split(admin, config, other)
                wrk_post(wrk, f"{base}/predict", body, 16, 1, tmp_path)
            for round_ in range(ROUNDS):
                order = CONFIGS[round_ % 3 :] + CONFIGS[: round_ % 3]
                for config in order:
                    _split(admin, config, other)
                    time.sleep(SETTLE_SECONDS)  # a load just ended: let its threads wind down
                    for concurrency in CONCURRENCY:
                        before = _shadow(admin)
                        cpu_before = _cpu_seconds(server.process.pid)
                        result = wrk_post(
                            wrk, f"{base}/predict", body, concurrency, SECONDS, tmp_path
                        )
                        spent = _cpu_seconds(server.process.pid) - cpu_before
                        results.setdefault((config, concurrency), []).append(result)
                        cpu.setdefault((config, concurrency), []).append(
                            spent / max(result.rps * SECONDS, 1) * 1e6
                        )
                        after = _shadow(admin)
                        for key in shadow_counts:
                            shadow_counts[key] += after[key] - before[key]
    finally:
        stop_process(server.process)
    table, ratios = _table(results, cpu)
    print("\n" + table)
    print(f"shadow: {shadow_counts['ok']:.0f} answered, {shadow_counts['dropped']:.0f} dropped")
    _write(table, machine, shadow_counts)
    assert all(r.errors == 0 for runs in results.values() for r in runs)
    for concurrency in CONCURRENCY:
        assert ratios[("canary 50%", concurrency)] >= CANARY_FLOOR, ratios
        assert ratios[("shadow 100%", concurrency)] >= SHADOW_FLOOR, ratios


def _split(admin: httpx.Client, config: str, other: str) -> None:
    split: dict[str, object] = {"canary": None, "shadow": None, "deadline_seconds": 60}
    if config.startswith("canary"):
        split["canary"] = {"model_uri": other, "weight": 50}
    elif config.startswith("shadow"):
        split["shadow"] = {"model_uri": other, "percent": 100}
    answer = admin.put("/admin/traffic", json=split, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text


def _shadow(admin: httpx.Client) -> dict[str, float]:
    counts = {"ok": 0.0, "dropped": 0.0}
    for family in text_string_to_metric_families(admin.get("/metrics").text):
        for sample in family.samples:
            outcome = sample.labels.get("outcome", "")
            if sample.name == "aliasflow_server_shadow_requests_total" and outcome in counts:
                counts[outcome] += sample.value
    return counts


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table(
    results: dict[tuple[str, int], list[Result]], cpu: dict[tuple[str, int], list[float]]
) -> tuple[str, dict[tuple[str, int], float]]:
    ratios: dict[tuple[str, int], float] = {}
    lines = [
        "| /predict, 1 row | req/s best (median) | / no split | p50 ms | p99 ms "
        "| p99 / no split | server CPU µs per request (median) | / no split |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency in CONCURRENCY:
        anchor = max(r.rps for r in results[("no split", concurrency)])
        anchor_p99 = statistics.median(r.p99_ms for r in results[("no split", concurrency)])
        anchor_cpu = statistics.median(cpu[("no split", concurrency)])
        for config in CONFIGS:
            runs = results[(config, concurrency)]
            best = max(r.rps for r in runs)
            p50 = statistics.median(r.p50_ms for r in runs)
            p99 = statistics.median(r.p99_ms for r in runs)
            spent = statistics.median(cpu[(config, concurrency)])
            ratios[(config, concurrency)] = best / anchor
            lines.append(
                f"| c={concurrency}, {config} | {best:,.0f} "
                f"({statistics.median(r.rps for r in runs):,.0f}) "
                f"| **{best / anchor:.2f}** | {p50:.2f} | {p99:.2f} | {p99 / anchor_p99:.2f} "
                f"| {spent:.0f} | **{spent / anchor_cpu:.2f}** |"
            )
    return "\n".join(lines), ratios


def _write(table: str, machine: str, shadow: dict[str, float]) -> None:
    header = "## Canary and shadow traffic"
    write_section(
        header,
        "\n".join(
            [
                header,
                "",
                f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
                "`python -m pytest -m bench benchmarks/test_traffic_split.py` "
                f"(`benchmarks/test_traffic_split.py`). Machine: {machine}.",
                f"One `aliasflow serve` of the iris pipeline pinned to CPU {SERVER_CPU}, `wrk` "
                f"(1 thread) to CPU {LOAD_CPU}; the anchor is the same server with no split, "
                f"in the same run. {ROUNDS} rounds of {SECONDS} s per configuration and "
                "concurrency, configurations alternating; best round (median in brackets), "
                "p50/p99 medians, and the server's CPU time per request (from /proc, all its "
                "threads; other sessions' load does not inflate it the way it cuts req/s). "
                "Canary: a second version of the model answering 50% of "
                "requests (`PUT /admin/traffic`); shadow: that version mirrored on 100%.",
                "",
                table,
                "",
                f"Shadow rounds: {shadow['ok']:,.0f} mirrors answered by the shadow, "
                f"{shadow['dropped']:,.0f} dropped by the bounded queue "
                "(`ALIASFLOW_SHADOW_QUEUE_SIZE`, 64): the shadow runs in a thread of its own "
                "on the server's one core, and sheds what it cannot keep up with rather than "
                "slow the clients.",
                "",
            ]
        ),
    )
