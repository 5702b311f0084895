"""`python -m tests.containerapps_emulator` as a process: one JSON line, then the real SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from azure.identity import ClientSecretCredential
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from controller.runtimes.netutil import free_port


def test_standalone_emulator_prints_what_the_sdk_needs_and_stops_on_ctrl_c() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.containerapps_emulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["arm_url"] == f"https://127.0.0.1:{port}"
        credential = ClientSecretCredential(
            info["tenant_id"],
            info["client_id"],
            info["client_secret"],
            authority=info["authority_host"],
            disable_instance_discovery=True,
            connection_verify=info["ca_bundle"],
        )
        client = ContainerAppsAPIClient(
            credential,
            info["subscription_id"],
            base_url=info["arm_url"],
            connection_verify=info["ca_bundle"],
        )
        env = client.managed_environments.get(info["resource_group"], info["environment"])
        assert env.name == info["environment"]
        assert list(client.container_apps.list_by_resource_group(info["resource_group"])) == []
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    assert code == 0
