"""`python -m tests.containerapps_emulator --port P [--backed]`: serve until Ctrl-C.

Prints one JSON line (arm_url, authority_host, tenant_id, client_id, client_secret,
ca_bundle, subscription_id, resource_group, environment) so any script can point the
real Azure SDK at it; one managed environment is seeded so apps can be created at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from tests.containerapps_emulator.server import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    ContainerAppsEmulator,
)

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.containerapps_emulator")
    parser.add_argument("--port", type=int, default=None, help="HTTPS port (default: a free one)")
    parser.add_argument("--backed", action="store_true", help="replicas are real model servers")
    parser.add_argument("--resource-group", default="rg-aliasflow")
    parser.add_argument("--environment", default="ml-prod")
    args = parser.parse_args(argv)
    emulator = ContainerAppsEmulator(backed=args.backed, port=args.port).start()
    emulator.add_environment(SUBSCRIPTION, args.resource_group, args.environment)
    stop = threading.Event()
    # Ctrl-C by handler, not KeyboardInterrupt: a process started in the background
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        json.dumps(
            {
                "arm_url": emulator.url,
                "authority_host": emulator.url,
                "tenant_id": TENANT,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "ca_bundle": str(emulator.ca_path),
                "subscription_id": SUBSCRIPTION,
                "resource_group": args.resource_group,
                "environment": args.environment,
            }
        ),
        flush=True,
    )
    try:
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
