"""Helpers shared by the serving benchmarks: pinned server processes and `wrk` runs.

Every server under test is pinned to CPU 0 (`taskset`) and `wrk` to CPU 1, so the load
generator never takes the server's core; a ready check polls instead of sleeping, and the
time it took is the server's cold start (process start to first 200).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from controller.runtimes.netutil import stop_process

SERVER_CPU, LOAD_CPU = "0", "1"

LUA = """
wrk.method = "POST"
wrk.body = [==[%BODY%]==]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"seconds\\": %f, \\"p50_ms\\": %f, \\"p99_ms\\": %f, "
    .. "\\"errors\\": %d}\\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    cold_start_s: float


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    assert found, "wrk could not be installed"
    return found


def start_pinned(
    label: str, argv: list[str], env: dict[str, str], ready_url: str, log: Path
) -> Server:
    """Start `argv` on the server CPU; returns once `ready_url` answers 200."""
    started = time.monotonic()
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *argv],
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - started < 180:
            if process.poll() is not None:
                raise AssertionError(f"{label} exited:\n{log.read_text()[-3000:]}")
            try:
                if client.get(ready_url).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        else:
            stop_process(process)
            raise AssertionError(f"{label} not ready after 180 s")
    return Server(label, process, time.monotonic() - started)


def wrk_post(wrk: str, url: str, body: str, concurrency: int, seconds: float, tmp: Path) -> Result:
    """`wrk` (one thread, on the load CPU) POSTing `body` to `url` for `seconds`."""
    script = tmp / f"post-{abs(hash(body))}.lua"
    script.write_text(LUA.replace("%BODY%", body))
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Result(
        data["requests"] / data["seconds"], data["p50_ms"], data["p99_ms"], data["errors"]
    )


def venv_path() -> str:
    """PATH with this interpreter's bin first: `mlflow models serve` execs `uvicorn` by name."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def mlflow_serve_argv(model_uri: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "--env-manager",
        "local",
        "-m",
        model_uri,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def aliasflow_serve_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "aliasflow_cli.main", "serve", "--port", str(port)]
