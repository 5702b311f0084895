"""Where the analysis reads a deployment's counters: its server's `/metrics`, or its
runtime's sum where no one server's counters are the deployment's (Container Apps)."""

from __future__ import annotations

from controller.core.ports import CountingRuntime, Runtime
from controller.reconcile.readings import counters_of
from controller.runtimes.memory import MemoryRuntime


class SummingRuntime(MemoryRuntime):
    kind = "containerapp"

    def server_metrics(self, name: str) -> str | None:
        return f"summed {name}"


def test_a_counting_runtime_answers_for_its_deployments_and_the_others_are_read() -> None:
    runtimes: dict[str, Runtime] = {"containerapp": SummingRuntime(), "local": MemoryRuntime()}
    read: list[str] = []

    def endpoint(url: str) -> str:
        read.append(url)
        return f"read {url}"

    assert isinstance(runtimes["containerapp"], CountingRuntime)
    assert not isinstance(runtimes["local"], CountingRuntime)
    assert counters_of(runtimes, endpoint, "iris", "containerapp", "https://app") == "summed iris"
    assert read == []  # one replica's /metrics behind the ingress is not the app's
    assert counters_of(runtimes, endpoint, "iris", "local", "http://s") == "read http://s"
    assert counters_of(runtimes, endpoint, "iris", "local", None) is None
    assert counters_of(runtimes, endpoint, "iris", None, "http://s") == "read http://s"
