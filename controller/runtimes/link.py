"""What the controller tells linked model servers to serve, and what they say they serve.

A server started with `ALIASFLOW_CONTROLLER_URL` asks the controller which version to
load (at boot, then on a poll) and reports what it serves (docs/server-contract.md, "The
server asks the controller"). That is how a runtime whose servers the controller cannot
reach one by one (Container Apps replicas behind one ingress, a scale-out, a container
its platform restarted) swaps them all: it records a new desired version here, and every
replica converges within a poll.

`ServerLinks` is that record, in memory, shared by the runtimes (which decide) and the
service's link endpoints (which answer and take reports):

- the desired model per deployment: what the controller last decided for it, after gates
  and quarantine, since a runtime only records a decision it executes. A revision may be
  pinned to its own version while it is being proven (a new revision booting on the
  new version while the old one keeps serving the old);
- the traffic split every replica applies to its own requests (a canary and its weight,
  a shadow and its share): a request reaches one replica of many, so each splits what it
  gets and the app's traffic follows the weight in aggregate. A new primary ends a
  canary (the canary became it, or it replaced the canary); the shadow stays;
- replica reports, kept for a time-to-live (three of the servers' poll intervals): a
  replica that stopped reporting drops out by itself. A report says which version the
  replica serves, which split it applies, and its prediction counters, summed here over
  the deployment's replicas for the analysis (`counters.py`).

Nothing here survives a restart on purpose: the runtimes re-seed desired versions and
splits from what they recorded on the workloads (tags), and the servers report again
within a poll. The summed counters start again from the replicas' next reports, lower:
the analysis takes that as a server restart and starts its window again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from controller.runtimes.counters import Counters, ReplicaCounters, add, render, summed

# Container Apps runs at most 1,000 replicas per revision; more live reports than twice
# that for one deployment are a misbehaving sender, and the oldest are dropped.
MAX_REPORTS = 2000


@dataclass(frozen=True)
class DesiredModel:
    model_uri: str
    version: str


@dataclass(frozen=True)
class RoleModel:
    """A version beside the primary: the canary (`share` = its weight, % of requests
    answered) or the shadow (`share` = the % of requests mirrored to it)."""

    model_uri: str
    version: str
    share: int


@dataclass(frozen=True)
class AppliedTraffic:
    """The split a replica says it applies (versions and shares; none when absent)."""

    canary_version: str | None = None
    canary_weight: int = 0
    shadow_version: str | None = None
    shadow_percent: int = 0


@dataclass(frozen=True)
class LinkTraffic:
    """The split the controller decided for a deployment's replicas."""

    canary: RoleModel | None = None
    shadow: RoleModel | None = None

    def applied(self) -> AppliedTraffic:
        """What a replica reports once it applies this split."""
        return AppliedTraffic(
            self.canary.version if self.canary else None,
            self.canary.share if self.canary else 0,
            self.shadow.version if self.shadow else None,
            self.shadow.share if self.shadow else 0,
        )


@dataclass(frozen=True)
class ReplicaReport:
    replica: str
    served_version: str | None
    ready: bool
    at: float
    revision: str | None = None
    # Why the replica does not serve what it was asked to (a refused swap), if it says.
    detail: str | None = None
    # The split it applies; None from a server that does not say (it splits nothing).
    traffic: AppliedTraffic | None = None


@dataclass
class _Deployment:
    desired: DesiredModel | None = None
    pinned: dict[str, DesiredModel] | None = None
    reports: dict[str, ReplicaReport] | None = None
    traffic: LinkTraffic = LinkTraffic()
    # Every replica's counters this process has heard of (departed ones too), and those
    # of the oldest departed ones folded together once there are too many to keep apart.
    counters: dict[str, ReplicaCounters] = field(default_factory=dict)
    folded: Counters = field(default_factory=dict)


class ServerLinks:
    def __init__(self, report_ttl: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.report_ttl = report_ttl
        self._clock = clock
        self._deployments: dict[str, _Deployment] = {}
        self._lock = threading.Lock()

    # -- decisions (runtimes) ------------------------------------------------------------

    def decide(self, deployment: str, model: DesiredModel, revision: str | None = None) -> None:
        """Every server of `deployment` should serve `model` (and pins end), or only those
        of `revision` while the others keep what they were told."""
        with self._lock:
            entry = self._deployments.setdefault(deployment, _Deployment())
            if revision is None:
                entry.desired, entry.pinned = model, None
                entry.traffic = replace(entry.traffic, canary=None)
            else:
                entry.pinned = {**(entry.pinned or {}), revision: model}

    def decide_traffic(self, deployment: str, traffic: LinkTraffic) -> None:
        """Every server of `deployment` should split its requests so (the whole split:
        what `traffic` lacks is removed)."""
        with self._lock:
            self._deployments.setdefault(deployment, _Deployment()).traffic = traffic

    def seed(
        self, deployment: str, model: DesiredModel, traffic: LinkTraffic | None = None
    ) -> None:
        """`model` (and `traffic`), unless a decision of this process already stands: what
        a restarted controller reads back from the workload's own record."""
        with self._lock:
            entry = self._deployments.setdefault(deployment, _Deployment())
            if entry.desired is None:
                entry.desired = model
                entry.traffic = traffic or LinkTraffic()

    def traffic(self, deployment: str) -> LinkTraffic:
        with self._lock:
            entry = self._deployments.get(deployment)
            return LinkTraffic() if entry is None else entry.traffic

    def desired(self, deployment: str, revision: str | None = None) -> DesiredModel | None:
        with self._lock:
            entry = self._deployments.get(deployment)
            if entry is None:
                return None
            if revision is not None and entry.pinned and revision in entry.pinned:
                return entry.pinned[revision]
            return entry.desired

    def forget(self, deployment: str) -> None:
        with self._lock:
            self._deployments.pop(deployment, None)

    # -- reports (servers) ----------------------------------------------------------------

    def report(
        self,
        deployment: str,
        replica: str,
        served_version: str | None,
        ready: bool,
        revision: str | None = None,
        detail: str | None = None,
        traffic: AppliedTraffic | None = None,
        counters: Counters | None = None,
    ) -> None:
        now = self._clock()
        with self._lock:
            entry = self._deployments.setdefault(deployment, _Deployment())
            reports = self._live(entry, now)
            reports[replica] = ReplicaReport(
                replica, served_version, ready, now, revision, detail, traffic
            )
            while len(reports) > MAX_REPORTS:
                oldest = min(reports.values(), key=lambda r: r.at)
                del reports[oldest.replica]
            if counters is not None:
                self._count(entry, replica, counters, now)

    def metrics(self, deployment: str) -> str | None:
        """The deployment's prediction counters (Prometheus text): every replica's, summed;
        None when no replica of it has reported any."""
        with self._lock:
            entry = self._deployments.get(deployment)
            if entry is None or not (entry.counters or entry.folded):
                return None
            total = summed(entry.counters.values(), entry.folded)
        return render(total)

    def _count(self, entry: _Deployment, replica: str, counters: Counters, now: float) -> None:
        kept = entry.counters.get(replica)
        if kept is None:
            kept = entry.counters[replica] = ReplicaCounters()
        kept.update(counters, now)
        while len(entry.counters) > MAX_REPORTS:
            name, oldest = min(entry.counters.items(), key=lambda item: item[1].seen_at)
            add(entry.folded, oldest.totals())
            del entry.counters[name]

    def reports(self, deployment: str) -> dict[str, ReplicaReport]:
        """Replica name -> its latest report, for reports younger than the time-to-live."""
        with self._lock:
            entry = self._deployments.get(deployment)
            return {} if entry is None else dict(self._live(entry, self._clock()))

    def _live(self, entry: _Deployment, now: float) -> dict[str, ReplicaReport]:
        reports = entry.reports if entry.reports is not None else {}
        expired = [name for name, r in reports.items() if now - r.at > self.report_ttl]
        for name in expired:
            del reports[name]
        entry.reports = reports
        return reports
