"""The containerapp runtime through the real `azure-mgmt-appcontainers` SDK over HTTPS,
against the Container Apps emulator in counting mode (replicas are records; the link is
played by `LinkedReplicas`).

What a user relies on: one owned app per deployment; a hot swap reaches every replica
with no new revision; any other change is a new revision that takes traffic only once
proven, while the old one keeps serving when the new one fails; a steady pass lists and
writes nothing else; nothing it does not own is touched; secrets never come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from azure.mgmt.appcontainers.models import ContainerApp

from controller.core.errors import (
    HealthTimeoutError,
    InvalidSpecError,
    RolloutRejectedError,
)
from controller.core.types import ActualState, Strategy, Traffic
from controller.reconcile.analysis import parse_server_metrics
from controller.runtimes.containerapp import ContainerAppRuntime
from controller.runtimes.link import AppliedTraffic, DesiredModel, ServerLinks
from tests.containerapps_emulator import ContainerAppsEmulator
from tests.containerapps_emulator.state import App, Revision
from tests.contract.containerapps.helpers import app_body, sdk_client
from tests.controller.runtimes.containerapp.conftest import (
    OTHER_RG,
    WIRING,
    LinkedReplicas,
    RuntimeFactory,
)
from tests.controller.runtimes.containerapp.helpers import RG, SECRET, SUB, make_desired


def wait_serving(runtime: ContainerAppRuntime, name: str, version: str) -> ActualState:
    deadline = time.monotonic() + 10
    while True:
        actual = runtime.observe(name)
        if actual is not None and actual.ready and actual.served_version == version:
            return actual
        assert time.monotonic() < deadline, f"{name} never served {version}: {actual}"
        time.sleep(0.02)


def app_of(emulator: ContainerAppsEmulator, name: str = "iris", rg: str = RG) -> App:
    return emulator.find(SUB, rg, name)


def active(app: App) -> list[str]:
    return sorted(name for name, revision in app.revisions.items() if revision.active)


def test_create_makes_one_owned_app_in_multiple_revision_mode_that_serves_once_replicas_report(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    made = runtime.deploy(make_desired())
    app = app_of(emulator)
    assert app.multiple
    (revision,) = app.revisions.values()
    assert revision.name.startswith("iris--r")
    assert len(revision.replicas) == 2
    assert app.weights() == {revision.name: 100}
    assert app.body["tags"]["aliasflow-managed"] == "true"
    assert app.body["tags"]["aliasflow-model-version"] == "1"
    assert emulator.state.calls[("PUT", "app")] == 1
    assert made.served_version == "1"
    assert made.ready
    assert made.endpoint == emulator.resolve_endpoint(app.fqdn())
    observed = wait_serving(runtime, "iris", "1")
    assert observed.spec_hash == make_desired().spec_hash
    # Secret values went in once, in the PUT; no answer ever carried one back.
    key = runtime.server_key("iris")
    for body in emulator.state.sent:
        assert SECRET.encode() not in body
        assert key.encode() not in body


def test_a_steady_full_pass_lists_once_per_resource_group_page_and_writes_nothing(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    for name in ("iris", "wine", "digits"):
        runtime.deploy(make_desired(name))
    runtime.deploy(make_desired("other", rg=OTHER_RG))
    wait_serving(runtime, "iris", "1")
    emulator.state.reset_counters()
    owned = runtime.list_owned()
    assert [a.name for a in owned] == ["digits", "iris", "other", "wine"]
    assert all(a.served_version == "1" and a.ready for a in owned)
    assert all(a.spec_hash for a in owned)
    # page_size=2: three apps in rg-ml are two pages, one app in rg-ml-2 is one.
    assert emulator.state.calls[("GET", "list")] == 3
    assert emulator.state.writes == 0
    assert sum(n for (_, route), n in emulator.state.calls.items() if route != "list") == 0


def test_a_hot_swap_reaches_every_replica_without_a_new_revision(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
    links: ServerLinks,
) -> None:
    runtime = make_runtime()
    current = runtime.deploy(make_desired())
    revisions = set(app_of(emulator).revisions)
    emulator.state.reset_counters()
    runtime.hotswap(make_desired(version="2"), current)
    assert links.desired("iris") == DesiredModel("models:/iris-classifier/2", "2")
    swapped = wait_serving(runtime, "iris", "2")
    assert swapped.model_version == "2"
    assert set(app_of(emulator).revisions) == revisions
    assert emulator.state.calls[("PATCH", "app")] == 1  # the version tag
    assert emulator.state.calls[("PUT", "app")] == 0
    # Told again (a self-heal after a replica came back on an old version): no write.
    emulator.state.reset_counters()
    runtime.hotswap(make_desired(version="2"), swapped)
    assert emulator.state.writes == 0


def test_a_spec_change_is_a_new_revision_that_takes_traffic_only_once_proven(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
    links: ServerLinks,
) -> None:
    runtime = make_runtime()
    runtime.deploy(make_desired())
    (old,) = app_of(emulator).revisions
    seen_while_proving: list[tuple[dict[str, int], str | None, str | None]] = []

    def check(app: App, revision: Revision) -> None:
        if revision.name != old and not seen_while_proving:
            old_told = links.desired("iris", old)
            new_told = links.desired("iris", revision.name)
            seen_while_proving.append(
                (
                    app.weights(),
                    old_told.version if old_told else None,
                    new_told.version if new_told else None,
                )
            )

    replicas.on_report = check
    changed = make_desired(version="2", env=(("LOG_LEVEL", "debug"),))
    runtime.deploy(changed)
    app = app_of(emulator)
    (new,) = set(app.revisions) - {old}
    # While the new revision proved itself: no traffic, and only it told version 2.
    assert seen_while_proving == [({old: 100}, "1", "2")]
    assert app.weights() == {new: 100}
    assert active(app) == [new]
    assert app.body["tags"]["aliasflow-spec-hash"] == changed.spec_hash
    assert (
        links.desired("iris", old)
        == links.desired("iris")
        == DesiredModel("models:/iris-classifier/2", "2")
    )
    assert wait_serving(runtime, "iris", "2").spec_hash == changed.spec_hash


def test_a_new_revision_that_fails_to_provision_leaves_the_old_one_serving(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
    links: ServerLinks,
) -> None:
    runtime = make_runtime()
    first = make_desired()
    runtime.deploy(first)
    (old,) = app_of(emulator).revisions
    emulator.state.faults.fail_provisioning.add("iris")
    with pytest.raises(RolloutRejectedError, match="keeps serving"):
        runtime.deploy(make_desired(image="myreg.azurecr.io/aliasflow-server:broken"))
    app = app_of(emulator)
    assert app.weights() == {old: 100}
    assert app.body["tags"]["aliasflow-spec-hash"] == first.spec_hash  # not recorded
    assert links.desired("iris") == DesiredModel("models:/iris-classifier/1", "1")
    assert wait_serving(runtime, "iris", "1").spec_hash == first.spec_hash


def test_a_revision_whose_replicas_never_report_times_out_and_a_retry_makes_no_second_one(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
) -> None:
    runtime = make_runtime()
    runtime.deploy(make_desired())
    (old,) = app_of(emulator).revisions
    changed = make_desired(timeout=1, env=(("LOG_LEVEL", "debug"),))

    def silence_new(app: App, revision: Revision) -> None:
        if revision.name != old:
            replicas.silent.add(revision.name)

    replicas.on_report = silence_new
    with pytest.raises(HealthTimeoutError, match="2 of 2 replicas have not reported"):
        runtime.deploy(changed)
    app = app_of(emulator)
    assert app.weights() == {old: 100}
    (new,) = set(app.revisions) - {old}
    puts = emulator.state.calls[("PUT", "app")]
    replicas.on_report = None
    replicas.silent = set()
    runtime.deploy(replace(changed, health_timeout_seconds=20))
    assert emulator.state.calls[("PUT", "app")] == puts  # the revision is there already
    assert set(app_of(emulator).revisions) == {old, new}
    assert app_of(emulator).weights() == {new: 100}


def test_a_spec_changed_back_is_a_fresh_revision_under_a_new_suffix(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    a, b = make_desired(), make_desired(env=(("LOG_LEVEL", "debug"),))
    runtime.deploy(a)
    runtime.deploy(b)
    runtime.deploy(a)
    app = app_of(emulator)
    names = list(app.revisions)
    assert len(names) == 3
    assert names[2] == f"{names[0]}-2"
    assert active(app) == [names[2]]
    assert app.weights() == {names[2]: 100}


def test_scale_to_zero_needs_no_replica_to_prove_a_revision(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime()
    made = runtime.deploy(make_desired(replicas=(0, 3)))
    assert made.ready
    observed = runtime.observe("iris")
    assert observed is not None
    assert observed.served_version == "1"
    assert observed.ready
    assert "scaled to zero" in observed.detail


def test_an_app_not_tagged_as_ours_is_never_touched(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory
) -> None:
    env_id = emulator.state.environments[(SUB, RG.lower(), "ml-prod")].id
    body = app_body(env_id)
    body.pop("tags")
    with sdk_client(emulator) as client:
        client.container_apps.begin_create_or_update(RG, "iris", ContainerApp(body)).result()
    runtime = make_runtime()
    assert runtime.list_owned() == []
    assert runtime.observe("iris") is None
    emulator.state.reset_counters()
    with pytest.raises(InvalidSpecError, match="not tagged aliasflow-managed"):
        runtime.deploy(make_desired())
    assert emulator.state.writes == 0
    runtime.delete("iris")  # unknown to the runtime (not owned): nothing happens
    assert emulator.state.writes == 0


def test_delete_removes_an_owned_app_and_forgets_what_its_servers_were_told(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
    links: ServerLinks,
) -> None:
    runtime = make_runtime()
    runtime.deploy(make_desired())
    runtime.delete("iris")
    assert emulator.state.app(SUB, RG, "iris") is None
    assert links.desired("iris") is None
    assert runtime.observe("iris") is None
    runtime.delete("iris")  # gone: a no-op


def test_throttling_and_500_storms_are_survived_without_duplicates(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    emulator.state.throttle(count=6, retry_after=0.05)
    emulator.state.faults.errors_500 = 3
    runtime.deploy(make_desired())
    assert [a.name for a in emulator.state.in_resource_group(SUB, RG)] == ["iris"]
    assert len(app_of(emulator).revisions) == 1
    assert sum(emulator.state.throttled.values()) == 6
    assert sum(emulator.state.failed.values()) == 3
    wait_serving(runtime, "iris", "1")


def test_the_environment_by_resource_id_and_an_unknown_one_named_in_the_error(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    env_id = emulator.state.environments[(SUB, RG.lower(), "ml-prod")].id
    runtime.deploy(make_desired(environment=env_id))
    assert app_of(emulator).environment.id == env_id
    emulator.state.reset_counters()
    with pytest.raises(InvalidSpecError, match=r"spec\.target\.containerapp\.environment"):
        runtime.deploy(make_desired("wine", environment="no-such-env"))
    assert emulator.state.writes == 0


def test_a_resource_group_the_controller_does_not_manage_is_refused(
    make_runtime: RuntimeFactory,
) -> None:
    with pytest.raises(InvalidSpecError, match="ALIASFLOW_CONTAINERAPP_RESOURCE_GROUPS"):
        make_runtime().deploy(make_desired(rg="rg-elsewhere"))


def test_servers_given_other_controller_settings_read_as_a_spec_to_roll_out(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    make_runtime().deploy(make_desired())
    moved = make_runtime(wiring=replace(WIRING, controller_url="https://new-controller"))
    (actual,) = moved.list_owned()
    assert actual.spec_hash == ""  # the planner sees a spec change: a new revision
    (same,) = make_runtime().list_owned()
    assert same.spec_hash == make_desired().spec_hash


def test_a_restarted_controller_tells_servers_the_version_it_recorded(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    current = runtime.deploy(make_desired())
    runtime.hotswap(make_desired(version="2"), current)
    fresh = ServerLinks()
    restarted = make_runtime(links=fresh)
    assert fresh.desired("iris") is None
    restarted.list_owned()
    assert fresh.desired("iris") == DesiredModel("models:/iris-classifier/2", "2")


def test_a_canary_is_a_split_every_replica_applies_recorded_on_the_tags_not_a_revision(
    emulator: ContainerAppsEmulator,
    make_runtime: RuntimeFactory,
    replicas: LinkedReplicas,
    links: ServerLinks,
) -> None:
    runtime = make_runtime()
    current = runtime.deploy(make_desired())
    revisions = set(app_of(emulator).revisions)
    emulator.state.reset_counters()
    replicas.split = False  # the replicas have not applied it yet
    canary = make_desired(version="2", strategy=Strategy.CANARY)
    pending = runtime.set_traffic(
        canary, Traffic("models:/iris-classifier/2", 20, "models:/iris-classifier/3", 50), current
    )
    assert links.traffic("iris").applied() == AppliedTraffic("2", 20, "3", 50)
    assert links.desired("iris") == DesiredModel("models:/iris-classifier/1", "1")
    assert pending.canary_version is None
    assert "do not apply the traffic split yet" in pending.detail
    tags = app_of(emulator).body["tags"]
    assert (tags["aliasflow-canary"], tags["aliasflow-shadow"]) == ("2@20", "3@50")
    assert emulator.state.calls[("PATCH", "app")] == 1
    assert emulator.state.calls[("PUT", "app")] == 0
    assert set(app_of(emulator).revisions) == revisions
    replicas.split = True
    applied = wait_for(runtime, lambda seen: seen.canary_version == "2")
    assert (applied.canary_weight, applied.shadow_version, applied.shadow_percent) == (20, "3", 50)
    assert applied.ready
    assert applied.served_version == "1"
    # The canary promoted: a hot swap to it ends the canary, the shadow stays.
    runtime.hotswap(make_desired(version="2"), applied)
    tags = app_of(emulator).body["tags"]
    assert "aliasflow-canary" not in tags
    assert tags["aliasflow-shadow"] == "3@50"
    promoted = wait_for(runtime, lambda seen: seen.served_version == "2")
    assert (promoted.canary_version, promoted.shadow_version) == (None, "3")
    assert set(app_of(emulator).revisions) == revisions


def test_a_restarted_controller_tells_replicas_the_split_it_recorded(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    current = runtime.deploy(make_desired())
    split = Traffic("models:/iris-classifier/2", 50)
    runtime.set_traffic(make_desired(version="2", strategy=Strategy.CANARY), split, current)
    fresh = ServerLinks()
    restarted = make_runtime(links=fresh)
    restarted.list_owned()
    assert fresh.desired("iris") == DesiredModel("models:/iris-classifier/1", "1")
    assert fresh.traffic("iris").applied() == AppliedTraffic("2", 50, None, 0)


def test_the_deployment_counters_are_the_replicas_reports_summed(
    emulator: ContainerAppsEmulator, make_runtime: RuntimeFactory, replicas: LinkedReplicas
) -> None:
    runtime = make_runtime()
    assert runtime.server_metrics("iris") is None
    replicas.counters = (
        'aliasflow_server_prediction_requests_total{outcome="ok",role="primary",version="1"} 4\n'
    )
    runtime.deploy(make_desired())  # two replicas
    wait_serving(runtime, "iris", "1")
    text = runtime.server_metrics("iris")
    assert text is not None
    assert parse_server_metrics(text)[("1", "primary")].ok == 8


def wait_for(
    runtime: ContainerAppRuntime, done: Callable[[ActualState], bool], name: str = "iris"
) -> ActualState:
    deadline = time.monotonic() + 10
    while True:
        actual = runtime.observe(name)
        if actual is not None and done(actual):
            return actual
        assert time.monotonic() < deadline, f"{name}: {actual}"
        time.sleep(0.02)
