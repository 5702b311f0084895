"""The ACI runtime through the real Azure SDK (ARM, Entra, LROs, retries) and the emulator.

Every request goes over loopback HTTPS to `tests/aci_emulator`, whose counters are the
assertions: how many lists, GETs and writes a pass costs.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from azure.mgmt.containerinstance.models import ContainerGroup

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
    RuntimeUnavailableError,
)
from controller.core.serverkeys import deployment_key
from controller.core.types import Action, ActualState, DesiredState, Operation
from controller.reconcile.execute import execute
from controller.reconcile.plan import plan_deployment
from controller.runtimes.aci import AciRuntime, QuotaLimiter
from controller.runtimes.aci.spec import TAG_IMMUTABLE_HASH, TAG_MODEL_VERSION
from controller.runtimes.hotswap import swap_deadline
from controller.runtimes.probe import ServerProbe
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


def create(runtime: AciRuntime, desired: DesiredState) -> ActualState | None:
    return execute(runtime, plan_deployment(desired, runtime.observe(desired.name)))


def test_create_then_one_list_per_resource_group_and_zero_writes_when_unchanged(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    first, second = make_desired("iris-a"), make_desired("iris-b", rg="rg-b")
    for desired in (first, second):
        created = create(runtime, desired)
        assert created is not None
        assert created.model_version == "1"
    assert emulator.state.count("PUT", "group") == 2

    emulator.state.reset_counters()
    owned = {state.name: state for state in runtime.list_owned()}
    assert sorted(owned) == ["iris-a", "iris-b"]
    assert owned["iris-a"].spec_hash == first.spec_hash
    # Every running server is asked; the counting emulator's endpoints do not answer.
    assert (owned["iris-a"].served_version, owned["iris-a"].ready) == (None, False)
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
    # The deployment's own key, not the controller's secret it derives from.
    assert env["ALIASFLOW_ADMIN_TOKEN"]["secureValue"] == deployment_key(ADMIN, "iris-sec")
    assert stored.body["tags"]["aliasflow-admin-key"] == "deployment-v1"
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
    key = deployment_key(ADMIN, "iris-sec")
    assert ADMIN.encode() not in sent
    assert key.encode() not in sent
    assert SECRET not in caplog.text
    assert ADMIN not in caplog.text
    assert key not in caplog.text


def test_hotswap_posts_to_the_server_and_patches_tags_without_a_put(
    emulator: AciEmulator, make_runtime: RuntimeFactory, stub_server: StubServer
) -> None:
    runtime = make_runtime(endpoint_resolver=lambda fqdn, port: stub_server.url)
    stub_server.key = deployment_key(ADMIN, "iris-hot")
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
            "signature": "ok",
            "model_uri": "models:/iris-classifier/2",
            "deadline_seconds": swap_deadline(promoted.health_timeout_seconds),
        }
    ]
    assert emulator.state.count("PUT", "group") == 0
    assert emulator.state.count("PATCH", "group") == 1
    after = emulator.state.group(SUB, "rg-a", "iris-hot")
    assert after is not None
    assert after is before
    assert after.starts == 1  # started once, by the create; the swap restarted nothing
    assert after.body["tags"][TAG_MODEL_VERSION] == "2"
    observed = runtime.observe("iris-hot")
    assert observed is not None
    assert observed.served_version == "2"
    assert observed.ready
    assert plan_deployment(promoted, observed).operation is Operation.NOOP


def test_a_restart_on_the_boot_version_is_seen_by_the_full_pass_and_swapped_back(
    emulator: AciEmulator, make_runtime: RuntimeFactory, stub_server: StubServer
) -> None:
    """ACI restarts a crashed container from the group's env (MODEL_URI: version 1) after
    a hot swap to 2: the cheap pass asks the server, and self-heal swaps again without a
    PUT or even a PATCH (the tags already say 2)."""
    runtime = make_runtime(endpoint_resolver=lambda fqdn, port: stub_server.url)
    create(runtime, make_desired("iris-crash"))
    execute(runtime, plan_deployment(make_desired("iris-crash", "2"), runtime.list_owned()[0]))
    emulator.restart_container("iris-crash", "rg-a", SUB)
    stub_server.ready = False  # booting
    (booting,) = runtime.list_owned()
    assert (booting.ready, booting.served_version) == (False, None)
    assert "/readyz is not ready" in booting.detail
    assert plan_deployment(make_desired("iris-crash", "2"), booting).operation is Operation.NOOP

    stub_server.version, stub_server.ready = "1", True  # back, on the boot version
    emulator.state.reset_counters()
    (back,) = runtime.list_owned()
    assert (back.model_version, back.served_version) == ("2", "1")
    action = plan_deployment(make_desired("iris-crash", "2"), back)
    assert action.operation is Operation.HOTSWAP
    assert action.reason == "serving version 1, expected 2"
    execute(runtime, action)
    assert stub_server.version == "2"
    assert emulator.state.writes == 0
    (healed,) = runtime.list_owned()
    assert plan_deployment(make_desired("iris-crash", "2"), healed).operation is Operation.NOOP


def test_the_full_pass_probes_every_server_at_most_n_at_a_time(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    running = 0
    peak = 0
    asked: list[str] = []
    guard = threading.Lock()

    def slow_probe(endpoint: str) -> ServerProbe:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
            asked.append(endpoint)
        time.sleep(0.05)
        with guard:
            running -= 1
        return ServerProbe(True, "1")

    runtime = make_runtime(probe=slow_probe, probe_concurrency=3)
    for i in range(7):
        runtime.deploy(make_desired(f"many-{i}"))
    asked.clear()
    owned = runtime.list_owned()
    assert len(asked) == len(set(asked)) == 7
    assert peak == 3
    assert all(state.ready and state.served_version == "1" for state in owned)


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


def test_an_env_change_is_one_put_that_restarts_in_place(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
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
    group = emulator.state.group(SUB, "rg-a", "iris-chg")
    assert group is not None
    env = group.body["properties"]["containers"][0]["properties"]["environmentVariables"]
    assert {"name": "LOG_LEVEL", "value": "debug"} in env  # the change reached ACI
    assert group.starts == 2  # "all running containers in the group are restarted"


def test_a_resource_change_is_refused_in_place_as_aci_does(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """CPU/memory/GPU, OS type, restart policy, network profile and zones cannot change
    on an existing group: ACI refuses the PUT (InvalidContainerGroupUpdate)."""
    runtime = make_runtime()
    create(runtime, make_desired("iris-cpu"))
    more_cpu = make_desired("iris-cpu", cpu=2.0)
    with pytest.raises(InvalidSpecError, match="InvalidContainerGroupUpdate"):
        execute(runtime, Action(Operation.RECREATE, "iris-cpu", "test", more_cpu))
    group = emulator.state.group(SUB, "rg-a", "iris-cpu")
    assert group is not None
    assert group.body["properties"]["containers"][0]["properties"]["resources"] == {
        "requests": {"memoryInGB": 1.5, "cpu": 1.0}
    }


def test_a_resource_change_replaces_the_group(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-rep"))
    group = emulator.state.group(SUB, "rg-a", "iris-rep")
    assert group is not None
    assert group.body["tags"][TAG_IMMUTABLE_HASH] == make_desired("iris-rep").immutable_hash
    emulator.state.reset_counters()

    action = plan_deployment(make_desired("iris-rep", cpu=2.0), runtime.list_owned()[0])
    assert action.operation is Operation.REPLACE
    assert "downtime" in action.reason
    execute(runtime, action)

    group = emulator.state.group(SUB, "rg-a", "iris-rep")
    assert group is not None
    resources = group.body["properties"]["containers"][0]["properties"]["resources"]
    assert resources["requests"]["cpu"] == 2.0
    assert emulator.state.count("DELETE", "group") == 1
    assert emulator.state.count("PUT", "group") == 1
    assert runtime.quota.in_window() == 3  # create, then the replace's delete and create
    settled = runtime.observe("iris-rep")
    assert settled is not None
    assert plan_deployment(make_desired("iris-rep", cpu=2.0), settled).operation is Operation.NOOP


def test_a_group_made_before_the_immutable_tag_is_never_replaced_on_upgrade(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """A missing tag is unknown, not a difference: an upgrade replaces nothing, and a
    resource change ACI then refuses says what to do."""
    runtime = make_runtime()
    create(runtime, make_desired("iris-old"))
    group = emulator.state.group(SUB, "rg-a", "iris-old")
    assert group is not None
    del group.body["tags"][TAG_IMMUTABLE_HASH]
    (old,) = runtime.list_owned()
    assert old.immutable_hash == ""
    assert plan_deployment(make_desired("iris-old"), old).operation is Operation.NOOP

    action = plan_deployment(make_desired("iris-old", cpu=2.0), old)
    assert action.operation is Operation.RECREATE
    with pytest.raises(InvalidSpecError, match="delete the container group") as refused:
        execute(runtime, action)
    assert "InvalidContainerGroupUpdate" in str(refused.value)
    assert emulator.state.count("DELETE", "group") == 0


def test_prune_deletes_only_owned_groups(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-owned"))
    foreign = {
        "location": "westeurope",
        "tags": {"team": "other"},
        "properties": {"containers": [], "osType": "Linux"},
    }
    emulator.state.groups[(SUB, "rg-a", "not-ours")] = Group(
        SUB, "rg-a", "not-ours", foreign, "Succeeded", "Running"
    )
    assert [s.name for s in runtime.list_owned()] == ["iris-owned"]
    # As if someone asked to delete it by name.
    runtime._whereabouts.remember((SUB, "rg-a"), "not-ours")
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


def test_a_dns_label_held_by_another_customer_does_not_block_ours(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """TenantReuse: the FQDN carries a hash of our tenant and the group's name, so the
    bare label in someone else's hands is no collision; the FQDN is read back."""
    runtime = make_runtime()
    emulator.state.take_dns_label("West Europe", "iris-taken")  # another subscription's
    create(runtime, make_desired("iris-taken"))
    group = emulator.state.group(SUB, "rg-a", "iris-taken")
    assert group is not None
    assert group.fqdn is not None
    ip = group.body["properties"]["ipAddress"]
    assert ip["autoGeneratedDomainNameLabelScope"] == "TenantReuse"
    label, digest, region, *_ = group.fqdn.split(".")
    assert (label, len(digest), region) == ("iris-taken", 16, "westeurope")
    (owned,) = runtime.list_owned()
    assert owned.endpoint is not None
    assert group.fqdn in owned.endpoint


def test_the_same_name_and_label_twice_in_a_tenant_tells_what_to_change(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """Two controllers of one tenant (say staging and prod) both deploying `iris-twin`
    with its default label: TenantReuse gives both the same FQDN, and ACI refuses the
    second. The status says which manifest field to change."""
    make_runtime().deploy(make_desired("iris-twin"))
    other = make_runtime()
    with pytest.raises(InvalidSpecError, match="DnsNameLabelAlreadyTaken") as refused:
        other.deploy(make_desired("iris-twin", rg="rg-b"))
    assert "set spec.target.aci.dnsNameLabel" in str(refused.value)
    assert not refused.value.retryable
    assert [g.resource_group for g in emulator.state.groups.values()] == ["rg-a"]


def test_more_than_the_region_offers_is_a_spec_problem_that_says_what_to_lower(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """A Linux group may request 4 CPU / 16 GB in a region by default (region
    availability docs); ARM answers more with 409 ServiceUnavailable, not a 400. It is
    permanent: the timer does not retry it, a change or a manual sync does."""
    runtime = make_runtime()
    bad = make_desired("iris-big", cpu=8.0)
    with pytest.raises(InvalidSpecError, match="ServiceUnavailable") as refused:
        execute(runtime, Action(Operation.CREATE, "iris-big", "test", bad))
    assert "'8' CPU" in str(refused.value)
    assert "lower spec.resources.cpu or spec.resources.memoryGB" in str(refused.value)
    assert not refused.value.retryable
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


def test_provisioning_failed_with_a_waiting_container_is_not_running_and_is_recreated(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """As ContainerGroupsGet_Failed.json: provisioningState Failed, container Waiting."""
    runtime = make_runtime()
    emulator.state.faults.fail_provisioning.add("iris-fail")
    with pytest.raises(RuntimeUnavailableError, match="provisioning failed") as raised:
        create(runtime, make_desired("iris-fail"))
    assert "not running" in str(raised.value)
    (owned,) = runtime.list_owned()
    assert not owned.running
    assert "Failed" in owned.detail
    assert plan_deployment(make_desired("iris-fail"), owned).operation is Operation.RECREATE


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


# -- ARM semantics the emulator keeps (issue 11, item 5) -----------------------------------


def test_a_put_while_the_group_is_transitioning_is_a_409(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    emulator.state.faults.provisioning_delay = 30
    with pytest.raises(HealthTimeoutError):
        create(runtime, make_desired("iris-409", timeout=1))
    changed = make_desired("iris-409", env=(("LOG_LEVEL", "debug"),))
    with pytest.raises(RuntimeUnavailableError, match="ContainerGroupTransitioning") as refused:
        execute(runtime, Action(Operation.RECREATE, "iris-409", "test", changed))
    assert refused.value.retryable  # temporary: the next pass tries again
    assert emulator.state.count("PUT", "group") == 1  # not even sent
    group = emulator.state.group(SUB, "rg-a", "iris-409")
    assert group is not None
    assert group.starts == 1

    # Had it been sent (the group started transitioning in between), ACI's 409 says the
    # same, also temporary.
    emulator.state.faults.provisioning_delay = 0
    runtime._get((SUB, "rg-a"), "iris-409")  # settles
    group.provisioning = "Updating"
    with pytest.raises(RuntimeUnavailableError, match="still Updating"):
        runtime.deploy(changed)


@pytest.mark.parametrize("status", [500, 504])
def test_a_put_committed_before_a_5xx_restarts_the_group_once(
    emulator: AciEmulator, make_runtime: RuntimeFactory, status: int
) -> None:
    runtime = make_runtime()
    emulator.state.faults.after_commit.append(status)
    create(runtime, make_desired("iris-commit"))
    assert [g.name for g in emulator.state.in_resource_group(SUB, "rg-a")] == ["iris-commit"]
    group = emulator.state.group(SUB, "rg-a", "iris-commit")
    assert group is not None
    assert group.starts == 1


def test_a_put_refused_before_commit_is_sent_again_once(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """A 500 before ARM did anything: the GET finds no group with this PUT's id, so the
    PUT goes again, once; the group starts once."""
    runtime = make_runtime()
    desired = make_desired("iris-retry")
    assert runtime.observe("iris-retry") is None
    emulator.state.reset_counters()
    emulator.state.faults.errors_500 = 1
    emulator.state.faults.errors_500_methods = frozenset({"PUT"})
    runtime.deploy(desired)
    assert emulator.state.failed[("PUT", "group")] == 1
    assert emulator.state.count("PUT", "group") == 2
    group = emulator.state.group(SUB, "rg-a", "iris-retry")
    assert group is not None
    assert group.starts == 1


def test_the_emulator_refuses_other_api_versions_and_unknown_tokens(
    emulator: AciEmulator,
) -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    def client(credential: object, **kwargs: object) -> ContainerInstanceManagementClient:
        return ContainerInstanceManagementClient(
            credential,  # type: ignore[arg-type]
            SUB,
            base_url=emulator.url,
            connection_verify=str(emulator.ca_path),
            retry_total=0,
            **kwargs,
        )

    old = client(emulator.credential(), api_version="2021-10-01")
    with old, pytest.raises(HttpResponseError, match="NoRegisteredProviderFound"):
        old.container_groups.get("rg-a", "anything")

    class Forged:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken("forged", int(time.time()) + 3600)

    forged = client(Forged())
    with forged, pytest.raises(ClientAuthenticationError, match="InvalidAuthenticationToken"):
        forged.container_groups.get("rg-a", "anything")
    import ssl

    import httpx

    bare = httpx.get(
        f"{emulator.url}/subscriptions/{SUB}/resourceGroups/rg-a/providers/"
        "Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01",
        verify=ssl.create_default_context(cafile=str(emulator.ca_path)),
        trust_env=False,
    )
    assert (bare.status_code, bare.json()["error"]["code"]) == (401, "AuthenticationFailed")


def test_the_token_is_asked_for_the_public_clouds_arm_scope(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """The emulator records each scope asked for; another cloud needs its own (item 6)."""
    make_runtime().list_owned()
    assert set(emulator.state.token_scopes) == {"https://management.azure.com/.default"}


def test_a_delete_answered_200_as_the_spec_allows(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-del200"))
    emulator.state.delete_answers_200 = True
    runtime.delete("iris-del200")
    assert emulator.state.groups == {}


def test_restart_count_and_starts_tell_a_crash_from_an_update(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    create(runtime, make_desired("iris-crash"))
    emulator.restart_container("iris-crash", "rg-a", SUB)
    group = runtime._get((SUB, "rg-a"), "iris-crash")
    assert group is not None
    (container,) = group.containers
    view: Any = container.instance_view  # read-only in the SDK's model: typed None
    assert view.restart_count == 1
    stored = emulator.state.group(SUB, "rg-a", "iris-crash")
    assert stored is not None
    assert stored.starts == 1  # a crash is not an ARM operation


def test_a_reuse_scope_gives_a_hashed_fqdn_even_when_the_label_is_taken(
    emulator: AciEmulator,
) -> None:
    """autoGeneratedDomainNameLabelScope (2023-05-01): the FQDN carries a hash, so the
    bare label may belong to someone else; the same group gets the same FQDN again."""
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    from controller.runtimes.aci.spec import build_container_group

    emulator.state.take_dns_label("westeurope", "iris-scoped")
    group = build_container_group(make_desired("iris-scoped"), ADMIN)  # TenantReuse
    with ContainerInstanceManagementClient(
        emulator.credential(),
        SUB,
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        polling_interval=0.01,
    ) as client:
        first = client.container_groups.begin_create_or_update("rg-a", "iris-scoped", group)
        fqdn = _fqdn(first.result())
        again = client.container_groups.begin_create_or_update("rg-a", "iris-scoped", group)
        assert _fqdn(again.result()) == fqdn
    label, digest, region, *_ = fqdn.split(".")
    assert (label, region) == ("iris-scoped", "westeurope")
    assert len(digest) == 16
    assert fqdn.endswith(".azurecontainer.io")


def _fqdn(group: ContainerGroup) -> str:
    assert group.ip_address is not None
    assert group.ip_address.fqdn is not None
    return str(group.ip_address.fqdn)


def test_a_vnet_deployment_has_a_private_ip_only(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    """ "Deploy container instances into an Azure virtual network": a private IP in the
    subnet, no public address, no DNS name; checked by the emulator against the spec."""
    runtime = make_runtime()
    subnet = (
        f"/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/"
        "virtualNetworks/v/subnets/aci"
    )
    settings = dict(make_desired("iris-private").target_settings)
    settings.pop("dnsNameLabel")
    settings["subnetId"] = subnet
    private = replace(make_desired("iris-private"), target_settings=tuple(sorted(settings.items())))
    create(runtime, private)
    body = emulator.state.group(SUB, "rg-a", "iris-private").body  # type: ignore[union-attr]
    ip = body["properties"]["ipAddress"]
    assert ip["type"] == "Private"
    assert "dnsNameLabel" not in ip
    assert body["properties"]["subnetIds"] == [{"id": subnet}]
    assert emulator.state.violations == []


def test_a_tls_sidecar_fronts_the_server_with_the_certificate_in_a_secret_volume(
    emulator: AciEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    settings = dict(make_desired("iris-tls").target_settings) | {"tls": "sidecar"}
    tls = replace(
        make_desired("iris-tls"),
        target_settings=tuple(sorted(settings.items())),
        tls=("-----BEGIN CERTIFICATE-----\nMIIB\n", "-----BEGIN PRIVATE KEY-----\nsecret-key\n"),
    )
    create(runtime, tls)
    body = emulator.state.group(SUB, "rg-a", "iris-tls").body  # type: ignore[union-attr]
    props = body["properties"]
    assert [p["port"] for p in props["ipAddress"]["ports"]] == [443]  # only TLS is public
    server, sidecar = props["containers"]
    assert sidecar["properties"]["image"].startswith("nginx:")
    assert sidecar["properties"]["volumeMounts"] == [
        {"name": "tls", "mountPath": "/etc/nginx", "readOnly": True}
    ]
    (volume,) = props["volumes"]
    files = {name: base64.b64decode(value).decode() for name, value in volume["secret"].items()}
    assert files["ssl.key"].endswith("secret-key\n")
    assert "proxy_pass http://127.0.0.1:8080;" in files["nginx.conf"]
    assert "secret-key" not in json.dumps(server)  # the key is only in the secret volume
    assert body["tags"]["aliasflow-scheme"] == "https"
    (seen,) = runtime.list_owned()
    assert seen.endpoint is not None
    assert seen.endpoint.startswith("https://")
    assert emulator.state.violations == []
