"""ACI at scale, counting mode: 1,000 manifests across 5 resource groups.

The real reconciler, the real ACI runtime and the real Azure SDK over loopback HTTPS
against the emulator in counting mode (no processes), with the in-memory registry (its
`alias_maps` is the one MLflow search per 1,000 models; it counts calls). Model servers
are not running, so the runtime's endpoint probe is replaced by one that answers "ready,
serving version 1" — the only substitution.

Measured: the first pass (1,000 creates through the per-deployment pipeline, under the
100-per-5-minutes quota limiter on a simulated clock) and a steady-state `sync_all`
(must be: one list per resource group and page — ARM pages with `nextLink`, the
emulator at `DEFAULT_PAGE_SIZE` groups a page — ≤ 1 search, zero writes, < 2 s).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controller.manifests.loader import ManifestSnapshot
from controller.manifests.source import GitManifestSource
from controller.reconcile.reconciler import Reconciler
from controller.registry.memory import MemoryRegistry
from controller.runtimes.aci import AciRuntime, QuotaLimiter, RetryOptions
from controller.runtimes.probe import ServerProbe
from controller.store.sql import SqlHistoryStore
from tests.aci_emulator import AciEmulator
from tests.aci_emulator.app import DEFAULT_PAGE_SIZE

SUB = "99999999-0000-0000-0000-000000000000"
GROUPS = [f"rg-scale-{i}" for i in range(5)]
N = 1000
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


class LoadedOnce:
    """The manifests at one revision: the per-deployment pipeline re-reads its source on
    every reconcile, which for 1,000 files would measure YAML parsing, not ACI."""

    def __init__(self, source: GitManifestSource) -> None:
        self._set = source.refresh()

    def load(self) -> ManifestSnapshot:
        return self._set


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
    emulator = AciEmulator().start()
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
    first = Reconciler(
        LoadedOnce(GitManifestSource(manifests)),
        registry,
        {"aci": runtime},
        store,
        health_poll_interval=0.01,
    )
    # The steady pass reads the 1,000 files from disk, as the controller's poll does.
    reconciler = Reconciler(GitManifestSource(manifests), registry, {"aci": runtime}, store)
    try:
        queued: list[str] = []
        started = time.perf_counter()
        first.sync_all("bench", lambda name, _trigger: queued.append(name))
        for name in queued:
            outcome = first.reconcile(name, "poll")
            assert outcome.result.value == "Succeeded", outcome
        first_wall = time.perf_counter() - started
        first_calls = dict(emulator.state.calls)
        assert len(emulator.state.groups) == N
        assert clock.now >= 2700  # 1,000 creates at 100 per 300 s: nine full windows

        emulator.state.reset_counters()
        registry.search_calls = 0
        requeued: list[str] = []
        started = time.perf_counter()
        actions = reconciler.sync_all("bench", lambda name, _trigger: requeued.append(name))
        steady = time.perf_counter() - started
        lists = emulator.state.count("GET", "list")
        writes = emulator.state.writes
        report = (
            f"\nACI scale (counting mode): first pass {N} creates: wall {first_wall:.1f}s, "
            f"simulated {clock.now:.0f}s under the quota limiter (waited "
            f"{runtime.quota.waited:.0f}s); ARM calls {first_calls}\n"
            f"steady-state sync_all: {steady * 1000:.0f} ms, lists {lists} (pages of "
            f"{DEFAULT_PAGE_SIZE}) for {len(GROUPS)} resource groups, "
            f"searches {registry.search_calls}, writes {writes}, "
            f"GETs {emulator.state.count('GET', 'group')}, enqueued {len(requeued)}, "
            f"all calls {dict(emulator.state.calls)}"
        )
        print(report)
        assert all(not a.changes_anything for a in actions)
        per_group = -(-N // len(GROUPS))  # ceiling: groups per resource group
        assert lists == len(GROUPS) * -(-per_group // DEFAULT_PAGE_SIZE)
        assert registry.search_calls <= 1
        assert writes == 0
        assert requeued == []
        assert steady < 2.0
    finally:
        runtime.close()
        store.close()
        emulator.stop()
