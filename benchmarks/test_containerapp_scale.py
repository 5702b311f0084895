"""Container Apps at scale, counting mode: `ALIASFLOW_SCALE_N` manifests (default 1,000)
across 5 resource groups, with ACI's steady pass over as many deployments as the anchor.

The real reconciler, the real containerapp runtime and the real Azure SDK over loopback
HTTPS against the Container Apps emulator in counting mode (no processes; every body's
schema check off, as in the ACI benchmark), the in-memory registry counting searches.
The apps may scale to zero (`replicas.min: 0`), so a new revision is proven without a
replica; before the steady pass every app gets one replica report of version 1, as its
linked server would send, so the pass reads served versions from reports as in steady
state with running replicas.

Measured: the first pass (every create through the per-deployment pipeline) and a steady
poll — the manifest re-read and the full pass (`sync_all`) — which must be: one list per
resource group and page (pages of 100, as the ACI emulator's), ≤ 1 search, zero writes,
no other ARM request. The anchor, in the same run: ACI's steady pass over the same
number of container groups (seeded as their PUTs would have left them, the server probe
answering "version 1" at once, as in benchmarks/test_aci_scale.py).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from benchmarks.report import describe_machine, write_section
from benchmarks.test_aci_scale import GROUPS as ACI_GROUPS
from benchmarks.test_aci_scale import MANIFEST as ACI_MANIFEST
from benchmarks.test_aci_scale import SUB as ACI_SUB
from benchmarks.test_aci_scale import seed_group
from controller.core.records import DeploymentStatus, Health, Sync
from controller.manifests.source import GitManifestSource
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.aci.spec import build_container_group
from controller.runtimes.containerapp import ContainerAppRuntime, ServerWiring
from controller.runtimes.link import ServerLinks
from controller.runtimes.probe import ServerProbe
from controller.store.sql import SqlHistoryStore
from tests.aci_emulator import AciEmulator
from tests.aci_emulator.app import DEFAULT_PAGE_SIZE
from tests.containerapps_emulator import ContainerAppsEmulator

SUB = "99999999-0000-0000-0000-0000000000aa"
GROUPS = [f"rg-aca-scale-{i}" for i in range(5)]
N = int(os.environ.get("ALIASFLOW_SCALE_N", "1000"))
STEADY_BUDGET = max(2.0, 5.0 * N / 10_000)
SECTION = "## Container Apps scale (emulator, counting mode)"
MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: {model}, alias: champion}}
  target:
    kind: containerapp
    containerapp:
      subscriptionId: {sub}
      resourceGroup: {rg}
      environment: ml-prod
      location: westeurope
      replicas: {{min: 0, max: 10}}
  image: myreg.azurecr.io/aliasflow-server:1
  resources: {{cpu: 0.5, memoryGB: 1.0}}
"""


def fleet(directory: Path, template: str, sub: str, groups: list[str]) -> MemoryRegistry:
    directory.mkdir()
    registry = MemoryRegistry()
    for i in range(N):
        name, model = f"dep-{i:04d}", f"model-{i:04d}"
        registry.add_version(model, "1")
        registry.aliases[model]["champion"] = "1"
        (directory / f"{name}.yaml").write_text(
            template.format(name=name, model=model, sub=sub, rg=groups[i % len(groups)])
        )
    return registry


def steady_pass(source: GitManifestSource, reconciler: Reconciler) -> tuple[float, list[str]]:
    queued: list[str] = []
    started = time.perf_counter()
    source.refresh()
    actions = reconciler.sync_all("poll", lambda name, _trigger: queued.append(name))
    wall = time.perf_counter() - started
    assert all(not a.changes_anything for a in actions)
    return wall, queued


def aci_anchor(tmp_path: Path) -> float:
    """ACI's steady pass over N seeded container groups (median of 3)."""
    manifests = tmp_path / "aci-manifests"
    registry = fleet(manifests, ACI_MANIFEST, ACI_SUB, ACI_GROUPS)
    emulator = AciEmulator(check_schema=False).start()
    runtime = AciRuntime(
        emulator.credential(),
        [(ACI_SUB, rg) for rg in ACI_GROUPS],
        "bench-admin-token",
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        endpoint_resolver=emulator.resolve_endpoint,
        quota=QuotaLimiter(100, 300),
        retry=RetryOptions(backoff_factor=0.01),
        polling_interval=0.01,
        probe=lambda endpoint: ServerProbe(True, "1"),
    )
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'aci-history.db'}")
    source = GitManifestSource(manifests)
    reconciler = Reconciler(source, registry, {"aci": runtime}, store)
    try:
        snapshot = source.refresh()
        for name, loaded in snapshot.deployments.items():
            desired = reconciler.pipeline.resolver.resolve(loaded)
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
        walls = []
        for _ in range(3):
            wall, queued = steady_pass(source, reconciler)
            assert queued == []
            walls.append(wall)
        return sorted(walls)[1]
    finally:
        runtime.close()
        store.close()
        emulator.stop()


@pytest.mark.bench
@pytest.mark.timeout(900 + N * 0.2)
def test_containerapp_scale_steady_state(tmp_path: Path) -> None:
    registry = fleet(tmp_path / "manifests", MANIFEST, SUB, GROUPS)
    emulator = ContainerAppsEmulator(page_size=DEFAULT_PAGE_SIZE, check_schema=False).start()
    for rg in GROUPS:
        emulator.add_environment(SUB, rg, "ml-prod")
    links = ServerLinks(report_ttl=3600)
    runtime = ContainerAppRuntime(
        emulator.credential(),
        [(SUB, rg) for rg in GROUPS],
        "bench-controller-secret",
        links,
        ServerWiring("https://controller.example.com", 10.0),
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        # The default resolver (https://<fqdn>): nothing is called here, and the
        # emulator's own resolver walks every app (a test helper, not the runtime's cost).
        retry=RetryOptions(backoff_factor=0.01),
        polling_interval=0.01,
        check_interval=0.01,
        drain_seconds=0.0,
    )
    store = SqlHistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    source = GitManifestSource(tmp_path / "manifests")
    reconciler = Reconciler(
        source, registry, {"containerapp": runtime}, store, health_poll_interval=0.01
    )
    try:
        # First pass: every create through the per-deployment pipeline.
        queued: list[str] = []
        started = time.perf_counter()
        source.refresh()
        reconciler.sync_all("poll", lambda name, _trigger: queued.append(name))
        for name in queued:
            outcome = reconciler.reconcile(name, "poll")
            assert outcome.result.value == "Succeeded", outcome
        first_wall = time.perf_counter() - started
        first_calls = sum(emulator.state.calls.values())
        first_writes = emulator.state.writes
        assert len(emulator.state.apps) == N
        # Each app's one replica reports version 1, as its linked server does.
        for i in range(N):
            links.report(f"dep-{i:04d}", f"dep-{i:04d}--replica-0", "1", True)

        steady_pass(source, reconciler)  # warm: the manifest cache, the SDK's connections
        emulator.state.reset_counters()
        registry.search_calls = 0
        walls = []
        for _ in range(3):
            wall, requeued = steady_pass(source, reconciler)
            assert requeued == []
            walls.append(wall)
        steady = sorted(walls)[1]
        calls = {f"{m} {r}": n for (m, r), n in emulator.state.calls.items()}
        lists = emulator.state.calls[("GET", "list")] // 3
        writes = emulator.state.writes
        searches = registry.search_calls // 3
    finally:
        runtime.close()
        store.close()
        emulator.stop()
    anchor = aci_anchor(tmp_path)

    per_group = math.ceil(N / len(GROUPS))
    pages = len(GROUPS) * math.ceil(per_group / DEFAULT_PAGE_SIZE)
    report = (
        f"\nContainer Apps scale (counting mode), {N} deployments in {len(GROUPS)} resource "
        f"groups: first pass {first_wall:.1f}s wall, {first_calls} ARM requests "
        f"({first_calls / N:.1f} per create), {first_writes} writes\n"
        f"steady poll (median of 3): {steady * 1000:.0f} ms, lists {lists} "
        f"(pages of {DEFAULT_PAGE_SIZE}), searches {searches}, writes {writes}, "
        f"all calls over 3 passes {calls}\n"
        f"ACI anchor, same run, same N: {anchor * 1000:.0f} ms; containerapp/aci = "
        f"{steady / anchor:.2f}"
    )
    print(report)
    write_section(
        SECTION,
        "\n".join(
            [
                SECTION,
                "",
                f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench` "
                f"(`benchmarks/test_containerapp_scale.py`). Machine: {describe_machine()}.",
                f"{N} manifests across {len(GROUPS)} resource groups; the real reconciler, "
                "containerapp runtime and Azure SDK over loopback HTTPS against "
                "`tests/containerapps_emulator` in counting mode (no processes; apps may "
                "scale to zero, so a revision is proven without replicas; each app then has "
                "one replica report of version 1, as its linked server sends). The anchor "
                "is ACI's steady pass over as many container groups in the same run. Both "
                "are the median of three passes after a warm one (manifests already parsed, "
                "connections open); the ACI section above times the first steady poll.",
                "",
                "| pass | result |",
                "| --- | --- |",
                f"| first pass: {N} creates through the per-deployment pipeline | "
                f"{first_wall:.0f} s wall; {first_calls / N:.1f} ARM requests per create "
                f"({first_writes / N:.0f} write); no create quota to wait for (Container "
                "Apps has none like ACI's 100 per 5 minutes) |",
                f"| steady `sync_all` (nothing changed), median of 3 | **{steady:.2f} s**; "
                f"{lists} list calls (one per resource group and page of "
                f"{DEFAULT_PAGE_SIZE}), {searches} registry search, {writes} writes, no "
                "other ARM request: served versions come from the replicas' reports, no "
                "replica listing |",
                f"| ACI's steady `sync_all`, same run, same N (anchor) | {anchor:.2f} s; "
                f"containerapp / aci = **{steady / anchor:.2f}** |",
                "",
            ]
        ),
    )
    assert lists == pages
    assert searches <= 1
    assert writes == 0
    assert set(calls) == {"GET list"}
    assert steady < STEADY_BUDGET
