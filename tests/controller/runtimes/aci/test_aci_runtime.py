"""The ACI runtime through the real Azure SDK (ARM, Entra, LROs, retries) and the emulator.

Every request goes over loopback HTTPS to `tests/aci_emulator`, whose counters are the
assertions: how many lists, GETs and writes a pass costs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.types import Action, Operation
from controller.reconcile.execute import execute
from controller.reconcile.plan import plan_deployment
from controller.runtimes.aci import QuotaLimiter
from controller.runtimes.aci.spec import TAG_MODEL_VERSION
from controller.runtimes.hotswap import swap_deadline
from tests.aci_emulator import AciEmulator
from tests.aci_emulator.state import Group
from tests.controller.runtimes.aci.conftest import (
    ADMIN,
    SECRET,
    SUB,
    RuntimeFactory,
    StubServer,
    make_desired,
)


def create(runtime, desired):  # type: ignore[no-untyped-def]
    return execute(runtime, plan_deployment(desired, runtime.observe(desired.name)))


def test_create_then_one_list_per_resource_group_and_zero_writes_when_unchanged(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    first, second = make_desired("iris-a"), make_desired("iris-b", rg="rg-b")
    for desired in (first, second):
        assert create(runtime, desired).model_version == "1"
    assert emulator.state.count("PUT", "group") == 2

    emulator.state.reset_counters()
    owned = {state.name: state for state in runtime.list_owned()}
    assert sorted(owned) == ["iris-a", "iris-b"]
    assert owned["iris-a"].spec_hash == first.spec_hash
    assert owned["iris-a"].served_version is None  # the cheap pass does not probe
    assert emulator.state.count("GET", "list") == 2  # one per resource group
    assert emulator.state.count("GET", "group") == 0
    actions = [plan_deployment(d, owned[d.name]) for d in (first, second)]
    assert [a.operation for a in actions] == [Operation.NOOP, Operation.NOOP]
    assert emulator.state.writes == 0


def test_listing_follows_next_link_pages(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    for i in range(5):  # page size 2: three pages
        create(runtime, make_desired(f"page-{i}"))
    emulator.state.reset_counters()
    assert len(runtime.list_owned()) == 5
    assert emulator.state.count("GET", "list") == 3 + 1  # rg-a: 3 pages, rg-b: 1


def test_container_group_as_put_and_secrets_never_returned(
    emulator: AciEmulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = make_runtime(tracking_uri="https://mlflow.example")
    desired = make_desired("iris-sec")
    create(runtime, desired)
    stored = emulator.state.group(SUB, "rg-a", "iris-sec")
    assert stored is not None
    props = stored.body["properties"]
    container = props["containers"][0]["properties"]
    env = {v["name"]: v for v in container["environmentVariables"]}
    assert env["MLFLOW_TRACKING_TOKEN"] == {"name": "MLFLOW_TRACKING_TOKEN", "secureValue": SECRET}
    assert env["ALIASFLOW_ADMIN_TOKEN"]["secureValue"] == ADMIN
    assert env["MODEL_URI"]["value"] == "models:/iris-classifier/1"
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example"
    assert props["restartPolicy"] == "Always"
    assert props["ipAddress"]["dnsNameLabel"] == "iris-sec"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert stored.body["tags"]["aliasflow-managed"] == "true"
    runtime.observe("iris-sec")
    runtime.list_owned()
    sent = b"".join(emulator.state.sent)
    assert b"iris-sec" in sent
    assert SECRET.encode() not in sent
    assert ADMIN.encode() not in sent
    assert SECRET not in caplog.text
    assert ADMIN not in caplog.text


def test_hotswap_posts_to_the_server_and_patches_tags_without_a_put(
    emulator: AciEmulator, make_runtime: RuntimeFactory, stub_server: StubServer
) -> None:
    runtime = make_runtime(endpoint_resolver=lambda fqdn, port: stub_server.url)
    create(runtime, make_desired("iris-hot"))
    before = emulator.state.group(SUB, "rg-a", "iris-hot")
    emulator.state.reset_counters()

    promoted = make_desired("iris-hot", version="2")
    action = plan_deployment(promoted, runtime.observe("iris-hot"))
    assert action.operation is Operation.HOTSWAP
    result = execute(runtime, action)

    assert result is not None
    assert result.model_version == "2"
    # The server is told to give up inside our own timeout, so a slow load never lands late.
    assert stub_server.admin_calls == [
        {
            "auth": f"Bearer {ADMIN}",
            "model_uri": "models:/iris-classifier/2",
            "deadline_seconds": swap_deadline(promoted.health_timeout_seconds),
        }
    ]
    assert emulator.state.count("PUT", "group") == 0
    assert emulator.state.count("PATCH", "group") == 1
    after = emulator.state.group(SUB, "rg-a", "iris-hot")
    assert after is before
    assert after.restarts == 0
    assert after.body["tags"][TAG_MODEL_VERSION] == "2"
    observed = runtime.observe("iris-hot")
    assert observed is not None
    assert observed.served_version == "2"
    assert observed.ready
    assert plan_deployment(promoted, observed).operation is Operation.NOOP


def test_refused_hotswap_keeps_the_recorded_version(
    emulator: AciEmulator, make_runtime: RuntimeFactory, stub_server: StubServer
) -> None:
    runtime = make_runtime(endpoint_resolver=lambda fqdn, port: stub_server.url)
    create(runtime, make_desired("iris-refuse"))
    stub_server.refuse = True
    action = plan_deployment(make_desired("iris-refuse", "2"), runtime.observe("iris-refuse"))
    with pytest.raises(RolloutRejectedError, match="input example check failed"):
        execute(runtime, action)
    assert emulator.state.count("PATCH", "group") == 0
    group = emulator.state.group(SUB, "rg-a", "iris-refuse")
    assert group is not None
    assert group.body["tags"][TAG_MODEL_VERSION] == "1"


def test_a_spec_change_is_one_put(emulator: AciEmulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-chg"))
    emulator.state.reset_counters()
    changed = make_desired("iris-chg", env=(("LOG_LEVEL", "debug"),))
    action = plan_deployment(changed, runtime.list_owned()[0])
    assert action.operation is Operation.RECREATE
    execute(runtime, action)
    assert emulator.state.count("PUT", "group") == 1
    assert emulator.state.writes == 1
    assert runtime.quota.in_window() == 1  # an update is not a create: not quota-counted


def test_prune_deletes_only_owned_groups(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-owned"))
    foreign = {"location": "westeurope", "tags": {"team": "other"}, "properties": {}}
    emulator.state.groups[(SUB, "rg-a", "not-ours")] = Group(
        SUB, "rg-a", "not-ours", foreign, "Succeeded", "Running"
    )
    assert [s.name for s in runtime.list_owned()] == ["iris-owned"]
    runtime._where["not-ours"] = (SUB, "rg-a")  # as if someone asked to delete it by name
    with pytest.raises(InvalidSpecError, match="not tagged aliasflow-managed"):
        runtime.delete("not-ours")
    with pytest.raises(InvalidSpecError, match="refusing to overwrite"):
        create(runtime, make_desired("not-ours"))
    runtime.delete("iris-owned")
    runtime.delete("iris-owned")  # already gone: a no-op
    assert set(k[2] for k in emulator.state.groups) == {"not-ours"}
    assert emulator.state.count("DELETE", "group") == 1


def test_throttling_storm_honours_retry_after_without_duplicates(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    emulator.state.throttle(count=4, retry_after=0.3)
    started = time.monotonic()
    create(runtime, make_desired("iris-429"))
    elapsed = time.monotonic() - started
    assert sum(emulator.state.throttled.values()) == 4
    assert elapsed >= 4 * 0.3 - 0.05  # each Retry-After was waited out
    assert [k[2] for k in emulator.state.groups] == ["iris-429"]
    # A storm longer than the retries gives up as a temporary error, nothing pruned.
    emulator.state.throttle(seconds=30, retry_after=0.01)
    with pytest.raises(RuntimeUnavailableError, match="429"):
        runtime.list_owned()


def test_tags_patch_is_retried_on_429(
    emulator: AciEmulator, make_runtime: RuntimeFactory, stub_server: StubServer
) -> None:
    runtime = make_runtime(endpoint_resolver=lambda fqdn, port: stub_server.url)
    create(runtime, make_desired("iris-p429"))
    action = plan_deployment(make_desired("iris-p429", "2"), runtime.observe("iris-p429"))
    emulator.state.throttle(count=2, retry_after=0.05, methods="PATCH")
    execute(runtime, action)
    assert emulator.state.throttled[("PATCH", "group")] == 2
    group = emulator.state.group(SUB, "rg-a", "iris-p429")
    assert group is not None
    assert group.body["tags"][TAG_MODEL_VERSION] == "2"


def test_server_errors_are_survived(emulator: AciEmulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    emulator.state.faults.errors_500 = 3
    create(runtime, make_desired("iris-500"))
    assert sum(emulator.state.failed.values()) == 3
    assert len(runtime.list_owned()) == 1


def test_bad_request_is_permanent(emulator: AciEmulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    bad = replace(make_desired("iris-bad"), cpu=8.0)
    with pytest.raises(InvalidSpecError, match="InvalidContainerResources"):
        execute(runtime, Action(Operation.CREATE, "iris-bad", "test", bad))
    assert emulator.state.groups == {}


def test_unmanaged_resource_group_is_refused(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    with pytest.raises(InvalidSpecError, match="ALIASFLOW_ACI_RESOURCE_GROUPS"):
        create(runtime, make_desired("iris-rg", rg="rg-elsewhere"))


def test_lro_timeout_is_a_clear_health_timeout(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    emulator.state.faults.provisioning_delay = 30
    with pytest.raises(HealthTimeoutError, match=r"did not finish provisioning within 1s"):
        create(runtime, make_desired("iris-slow", timeout=1))
    observed = runtime.list_owned()
    assert observed[0].running
    assert not observed[0].ready
    assert "Creating" in observed[0].detail or "Waiting" in observed[0].detail


@pytest.mark.parametrize("keeps_running", [True, False])
def test_provisioning_failed_reports_what_the_containers_do(
    emulator: AciEmulator, make_runtime: RuntimeFactory, keeps_running: bool
) -> None:
    runtime = make_runtime()
    emulator.state.faults.fail_provisioning.add("iris-fail")
    emulator.state.faults.failed_keeps_running = keeps_running
    with pytest.raises(RuntimeUnavailableError, match="provisioning failed") as raised:
        create(runtime, make_desired("iris-fail"))
    assert ("still running" if keeps_running else "not running") in str(raised.value)
    emulator.state.reset_counters()
    (owned,) = runtime.list_owned()
    assert owned.running is keeps_running  # decided by the instance view, not by "Failed"
    assert emulator.state.count("GET", "group") == 1  # the one Failed group was looked at


def test_quota_limiter_waits_on_the_simulated_clock(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    now = [0.0]
    limiter = QuotaLimiter(
        2,
        300,
        max_wait=float("inf"),
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    runtime = make_runtime(quota=limiter)
    for i in range(3):
        create(runtime, make_desired(f"q-{i}"))
    assert now[0] == 300  # the third create waited for the window
    strict = QuotaLimiter(1, 300, max_wait=10, clock=lambda: 0.0)
    strict.acquire()
    with pytest.raises(RuntimeUnavailableError, match="quota"):
        strict.acquire("create x")
