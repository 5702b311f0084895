"""`python -m tests.aci_emulator` as a process, driven by the real SDK from its JSON line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from azure.identity import ClientSecretCredential
from azure.mgmt.containerinstance import ContainerInstanceManagementClient

from controller.runtimes.netutil import free_port


def test_the_standalone_emulator_serves_the_real_sdk_until_interrupted() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.aci_emulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["arm_url"] == f"https://127.0.0.1:{port}"
        credential = ClientSecretCredential(
            line["tenant_id"],
            line["client_id"],
            line["client_secret"],
            authority=line["authority_host"],
            disable_instance_discovery=True,
            connection_verify=line["ca_bundle"],
        )
        with ContainerInstanceManagementClient(
            credential,
            "00000000-0000-0000-0000-000000000001",
            base_url=line["arm_url"],
            connection_verify=line["ca_bundle"],
        ) as client:
            assert list(client.container_groups.list_by_resource_group("rg")) == []
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
