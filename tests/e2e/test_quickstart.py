"""The README's first command, as a new user runs it: `aliasflow up`, the printed curl, Ctrl-C,
`aliasflow down`. Everything is a real process on free loopback ports."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from controller.runtimes.netutil import free_port

CURL = re.compile(r"curl -s (?P<endpoint>\S+)/predict .* -d '(?P<body>.*)'$")


def _collect(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line.rstrip("\n"))


def _wait_for(lines: list[str], text: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never saw {text!r}:\n" + "\n".join(lines[-40:]))
        time.sleep(0.2)


def test_up_serves_a_first_model_and_down_stops_everything(tmp_path: Path, repo_root: Path) -> None:
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "aliasflow_cli.main"]
    up = subprocess.Popen(
        [
            *command,
            "up",
            "--data-dir",
            str(data_dir),
            "--manifests",
            str(repo_root / "manifests"),
            "--mlflow-port",
            str(free_port()),
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_collect, args=(up.stdout, lines), daemon=True)
    reader.start()
    endpoint = ""
    try:
        _wait_for(lines, "aliasflow is up", up, timeout=300)
        curl = next(m for line in lines if (m := CURL.search(line.strip())))
        endpoint = curl["endpoint"]
        answer = httpx.post(
            f"{endpoint}/predict", json=json.loads(curl["body"]), trust_env=False, timeout=10
        )
        assert answer.status_code == 200
        assert answer.json()["model"] == {"name": "iris-classifier", "version": "1"}
        assert any("dashboard and API" in line for line in lines)
        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(timeout=60) == 0
        _wait_for(lines, "model servers keep serving", up, timeout=5)
        assert httpx.get(f"{endpoint}/readyz", trust_env=False).status_code == 200
    finally:
        if up.poll() is None:
            up.kill()
        down = subprocess.run(
            [*command, "down", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything `make up` started is stopped" in down.stdout
    try:
        httpx.get(f"{endpoint}/readyz", trust_env=False, timeout=2)
        raise AssertionError("the model server still answers after `aliasflow down`")
    except httpx.ConnectError:
        pass
