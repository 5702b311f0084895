"""ACI at scale, counting mode: `ALIASFLOW_SCALE_N` manifests (default 1,000) across 5
resource groups.

The real reconciler, the real ACI runtime and the real Azure SDK over loopback HTTPS
against the emulator in counting mode (no processes), with the in-memory registry (its
`alias_maps` is the one MLflow search per 1,000 models; it counts calls). Model servers
are not running, so the runtime's endpoint probe is replaced by one that answers "ready,
serving version 1" — the only substitution.

Measured: the first pass (up to 1,000 creates through the per-deployment pipeline, under
the 100-per-5-minutes quota limiter on a simulated clock; beyond 1,000, the rest of the
groups are put into the emulator as those PUTs would have left them, so a 10,000 run
measures the steady pass rather than an hour of creates) and a steady poll — re-reading the
manifest directory (`refresh`) and the full pass (`sync_all`) — which must be: one list
per resource group and page (ARM pages with `nextLink`, the emulator at
`DEFAULT_PAGE_SIZE` groups a page), ≤ 1 search, zero writes, within 2 s at 1,000
deployments and 5 s at 10,000.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from azure.mgmt.containerinstance.models import ContainerGroup

from controller.core.records import DeploymentStatus, Health, Sync
from controller.manifests.source import GitManifestSource
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.aci.spec import build_container_group
from controller.runtimes.probe import ServerProbe
from controller.store.sql import SqlHistoryStore
from tests.aci_emulator import TENANT, AciEmulator
from tests.aci_emulator.app import DEFAULT_PAGE_SIZE
from tests.aci_emulator.state import Group, fqdn_for

SUB = "99999999-0000-0000-0000-000000000000"
GROUPS = [f"rg-scale-{i}" for i in range(5)]
N = int(os.environ.get("ALIASFLOW_SCALE_N", "1000"))
# Seconds a steady poll may take: 2 s up to 1,000 deployments, 5 s per 10,000 beyond.
STEADY_BUDGET = max(2.0, 5.0 * N / 10_000)
FIRST_PASS_MAX = 1000
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: {model}, alias: champion}}
  target:
    kind: aci
    aci: {{subscriptionId: {sub}, resourceGroup: {rg}, location: westeurope}}
  image: myreg.azurecr.io/aliasflow-server:1
"""


class SimClock:
    """Simulated time for the quota limiter: sleeping advances it instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.mark.bench
@pytest.mark.timeout(600 + N * 0.05)
def test_aci_scale_steady_state(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    registry = MemoryRegistry()
    for i in range(N):
        name, model = f"dep-{i:04d}", f"model-{i:04d}"
        registry.add_version(model, "1")
        registry.aliases[model]["champion"] = "1"
        (manifests / f"{name}.yaml").write_text(
            MANIFEST.format(name=name, model=model, sub=SUB, rg=GROUPS[i % len(GROUPS)])
        )
    emulator = AciEmulator(check_schema=False).start()
    emulator.state.lro_retry_after = "0"
    clock = SimClock()
    runtime = AciRuntime(
        emulator.credential(),
        [(SUB, rg) for rg in GROUPS],
        "bench-admin-token",
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        endpoint_resolver=emulator.resolve_endpoint,
        quota=QuotaLimiter(100, 300, max_wait=float("inf"), clock=clock, sleep=clock.sleep),
        retry=RetryOptions(backoff_factor=0.01),
        polling_interval=0.01,
        probe=lambda endpoint: ServerProbe(True, "1"),
    )
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    source = GitManifestSource(manifests)
    reconciler = Reconciler(source, registry, {"aci": runtime}, store, health_poll_interval=0.01)
    try:
        queued: list[str] = []
        started = time.perf_counter()
        snapshot = source.refresh()
        reconciler.sync_all("poll", lambda name, _trigger: queued.append(name))
        created = min(N, FIRST_PASS_MAX)
        for name in queued[:created]:
            outcome = reconciler.reconcile(name, "poll")
            assert outcome.result.value == "Succeeded", outcome
        first_wall = time.perf_counter() - started
        first_calls = dict(emulator.state.calls)
        assert clock.now >= (created // 100 - 1) * 300  # creates at 100 per 300 s
        for name in queued[created:]:
            desired = reconciler.pipeline.resolver.resolve(snapshot.deployments[name])
            seed_group(emulator, build_container_group(desired, "bench-admin-token"))
            store.put_status(
                DeploymentStatus(
                    name,
                    Sync.SYNCED,
                    Health.HEALTHY,
                    "in sync",
                    desired_version="1",
                    served_version="1",
                    prune=True,
                )
            )
        assert len(emulator.state.groups) == N

        emulator.state.reset_counters()
        registry.search_calls = 0
        requeued: list[str] = []
        # One steady poll: the directory re-read (nothing changed) and the full pass.
        started, cpu_started = time.perf_counter(), time.process_time()
        source.refresh()
        refreshed = time.perf_counter() - started
        actions = reconciler.sync_all("poll", lambda name, _trigger: requeued.append(name))
        steady = time.perf_counter() - started
        # CPU seconds of this process (controller and in-process emulator together): what
        # the pass costs, unaffected by whatever else the machine runs meanwhile.
        steady_cpu = time.process_time() - cpu_started
        lists = emulator.state.count("GET", "list")
        writes = emulator.state.writes
        searches = registry.search_calls
        gets = emulator.state.count("GET", "group")
        calls = dict(emulator.state.calls)
        if os.environ.get("ALIASFLOW_SCALE_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            source.refresh()
            reconciler.sync_all("poll", lambda name, _trigger: None)
            profile.disable()
            wanted = os.environ["ALIASFLOW_SCALE_PROFILE"]
            order = "tottime" if wanted == "tottime" else "cumulative"
            pstats.Stats(profile).sort_stats(order).print_stats(40)
        report = (
            f"\nACI scale (counting mode), {N} deployments: first pass {created} creates: "
            f"wall {first_wall:.1f}s, "
            f"simulated {clock.now:.0f}s under the quota limiter (waited "
            f"{runtime.quota.waited:.0f}s); ARM calls {first_calls}\n"
            f"steady poll: {steady * 1000:.0f} ms wall, {steady_cpu * 1000:.0f} ms CPU (manifest "
            f"refresh {refreshed * 1000:.0f} ms), "
            f"lists {lists} (pages of "
            f"{DEFAULT_PAGE_SIZE}) for {len(GROUPS)} resource groups, "
            f"searches {searches}, writes {writes}, "
            f"GETs {gets}, enqueued {len(requeued)}, "
            f"all calls {calls}"
        )
        print(report)
        assert all(not a.changes_anything for a in actions)
        per_group = -(-N // len(GROUPS))  # ceiling: groups per resource group
        assert lists == len(GROUPS) * -(-per_group // DEFAULT_PAGE_SIZE)
        assert searches <= 1
        assert writes == 0
        assert requeued == []
        assert steady < STEADY_BUDGET
    finally:
        runtime.close()
        store.close()
        emulator.stop()


def seed_group(emulator: AciEmulator, group: ContainerGroup) -> None:
    """Put a group into the emulator as a successful PUT of it would have left it."""
    body = group.serialize()
    tags = body.get("tags") or {}
    name = tags["aliasflow-deployment"]
    placed = Group(
        SUB,
        _resource_group_of(name),
        name,
        body,
        provisioning="Succeeded",
        container_state="Running",
        starts=1,
    )
    placed.fqdn = fqdn_for(placed, TENANT)
    with emulator.state.lock:
        emulator.state.groups[placed.key] = placed


def _resource_group_of(name: str) -> str:
    return GROUPS[int(name.removeprefix("dep-")) % len(GROUPS)]
