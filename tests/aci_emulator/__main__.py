"""`python -m tests.aci_emulator --port P [--backed]`: the emulator for people and scripts.

Prints one JSON line with what the real Azure SDK needs (ARM URL, authority host,
service principal, CA bundle), then serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.aci_emulator.server import CLIENT_ID, CLIENT_SECRET, TENANT, AciEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.aci_emulator")
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: a free one)")
    parser.add_argument(
        "--backed",
        action="store_true",
        help="run each container group as a real model server (needs MLFLOW_TRACKING_URI "
        "in the group's env)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aci-emulator-backing-") as backing:
        emulator = AciEmulator(
            backed_data_dir=Path(backing) if args.backed else None, port=args.port or None
        )
        emulator.start()
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
