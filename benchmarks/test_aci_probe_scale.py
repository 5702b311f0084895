"""The price of asking every ACI server what it serves, at 1,000 deployments.

A restarted container comes back on its boot version (issue 11), so the ACI runtime's
full pass probes every running server (`GET /readyz`, one shared client, bounded
concurrency; runtimes/probe.py). Measured here, in one run:

- anchor: `AciRuntime.list_owned()` over 1,000 owned groups in 5 resource groups of the
  emulator (counting mode), with the probe replaced by a constant (the cost of the
  listing alone, i.e. the pass before this design);
- the same with real probes over loopback HTTP to a separate process answering for all
  1,000 servers (`fleet_server.py`), 7 of them restarted on version 1;
- servers that accept a connection and never answer (the read timeout bounds each probe):
  64 of them, one concurrency's worth, to measure the worst case per batch.

Printed as wall times and the ratio to the anchor; numbers go to docs/performance.md.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.aci.spec import build_container_group
from controller.runtimes.netutil import free_port, wait_until_ready
from controller.runtimes.probe import PROBE_CONCURRENCY, PROBE_TIMEOUT, ServerProbe
from tests.aci_emulator import TENANT, AciEmulator
from tests.aci_emulator.state import Group, fqdn_for
from tests.controller.runtimes.aci.conftest import make_desired

SUB = "11111111-2222-3333-4444-555555555555"  # make_desired's subscription
GROUPS = ["rg-a", "rg-b", "rg-c", "rg-d", "rg-e"]
N = 1000
RESTARTED = [f"dep-{i:04d}" for i in (3, 150, 299, 420, 666, 777, 999)]
RUNS = 3


@pytest.fixture(scope="module")
def emulator() -> Iterator[AciEmulator]:
    """1,000 running groups, tagged as hot-swapped to version 2, seeded as ARM holds them."""
    emu = AciEmulator().start()
    for i in range(N):
        name = f"dep-{i:04d}"
        desired = make_desired(name, version="2", rg=GROUPS[i % len(GROUPS)])
        body = dict(build_container_group(desired, "admin").serialize())
        group = Group(SUB, GROUPS[i % len(GROUPS)], name, body, "Succeeded", "Running")
        group.fqdn = fqdn_for(group, TENANT)
        emu.state.groups[group.key] = group
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def fleet() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.fleet_server:app", "--port", str(port)],
        env={"FLEET_RESTARTED": ",".join(RESTARTED), "PATH": "", "PYTHONPATH": "."},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/s/warm/readyz", timeout=30, process=server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def silent() -> Iterator[str]:
    """Accepts connections and never answers: a hung server."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


def runtime(
    emulator: AciEmulator, resolve: Callable[[str, int], str], **kwargs: object
) -> AciRuntime:
    return AciRuntime(
        emulator.credential(),
        [(SUB, rg) for rg in GROUPS],
        "admin",
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        endpoint_resolver=resolve,
        quota=QuotaLimiter(100, 300),
        retry=RetryOptions(backoff_factor=0.01),
        **kwargs,  # type: ignore[arg-type]
    )


def timed(call: Callable[[], object], runs: int = RUNS) -> tuple[float, object]:
    walls, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), result


@pytest.mark.bench
def test_probing_every_aci_server_at_1000_deployments(
    emulator: AciEmulator, fleet: str, silent: str
) -> None:
    def by_label(fqdn: str, port: int) -> str:
        return f"{fleet}/s/{fqdn.split('.')[0]}"

    anchor = runtime(emulator, by_label, probe=lambda endpoint: ServerProbe(True, "2"))
    probed = runtime(emulator, by_label)
    try:
        anchor.list_owned()  # tokens and connections, outside the measurement
        probed.list_owned()
        listing, _ = timed(anchor.list_owned)
        wall, owned = timed(probed.list_owned)
    finally:
        anchor.close()
        probed.close()
    assert isinstance(owned, list)
    assert len(owned) == N
    drifted = sorted(s.name for s in owned if s.served_version != s.model_version)
    assert drifted == RESTARTED  # every restart seen, nothing else
    assert all(s.ready for s in owned)

    hung_names = {f"dep-{i:04d}" for i in range(PROBE_CONCURRENCY)}

    def hung_or_fleet(fqdn: str, port: int) -> str:
        label = fqdn.split(".")[0]
        return silent if label in hung_names else f"{fleet}/s/{label}"

    with_hung = runtime(emulator, hung_or_fleet)
    try:
        hung_wall, hung_owned = timed(with_hung.list_owned, runs=1)
    finally:
        with_hung.close()
    assert isinstance(hung_owned, list)
    assert sum(not s.ready for s in hung_owned) == PROBE_CONCURRENCY
    read_timeout = PROBE_TIMEOUT.read or 0.0
    print(
        f"\nACI full pass at {N} deployments ({len(GROUPS)} resource groups, "
        f"{PROBE_CONCURRENCY} probes at a time): listing only (anchor) {listing * 1000:.0f} ms; "
        f"listing + {N} probes {wall * 1000:.0f} ms ({wall / listing:.2f}x the anchor, "
        f"+{(wall - listing) * 1000:.0f} ms, {(wall - listing) / N * 1e6:.0f} µs per server); "
        f"{len(RESTARTED)} restarted servers found. With {PROBE_CONCURRENCY} hung servers "
        f"(read timeout {read_timeout:g} s): {hung_wall * 1000:.0f} ms"
    )
    assert hung_wall < wall + 2 * read_timeout  # one batch of timeouts, not one per server
