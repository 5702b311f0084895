"""Resources as ARM returns them: the stored model rendered into the spec's shapes.

spec = specification/app/resource-manager/Microsoft.App/ContainerApps/stable/2026-07-01/
openapi.json. Secret values never appear: `Secret.value` is `x-ms-secret` (spec), which
ARM leaves out of every GET; only `listSecrets` returns them.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.containerapps_emulator.state import (
    APP_TYPE,
    DEFAULT_MAX_REPLICAS,
    App,
    Environment,
    Replica,
    Revision,
)

Json = dict[str, Any]
# spec: ContainerAppRunningStatus; ContainerApps_CreateOrUpdate example: a 201 answer
# says provisioningState InProgress with runningStatus Progressing.
_RUNNING_STATUS = {"InProgress": "Progressing", "Succeeded": "Running", "Deleting": "Progressing"}


def app_view(app: App) -> Json:
    body = copy.deepcopy(app.body)
    props = body.setdefault("properties", {})
    config = props.setdefault("configuration", {})
    config.setdefault("activeRevisionsMode", "Single")  # spec: the default
    for secret in config.get("secrets") or []:
        secret.pop("value", None)  # spec: Secret.value is x-ms-secret
    ingress = config.get("ingress")
    if ingress is not None:
        ingress["fqdn"] = app.fqdn()
        ingress.setdefault("transport", "auto")  # spec: Ingress.transport default
        if not ingress.get("traffic"):
            # docs: traffic-splitting, all traffic goes to the latest revision by default.
            ingress["traffic"] = [{"latestRevision": True, "weight": 100}]
    template = props.setdefault("template", {})
    scale = template.setdefault("scale", {})
    scale.setdefault("maxReplicas", DEFAULT_MAX_REPLICAS)  # spec: Scale.maxReplicas default
    props["provisioningState"] = app.provisioning
    if app.provisioning in _RUNNING_STATUS:
        props["runningStatus"] = _RUNNING_STATUS[app.provisioning]
    props["managedEnvironmentId"] = app.environment.id
    props["environmentId"] = app.environment.id
    if app.latest:
        props["latestRevisionName"] = app.latest
        props["latestRevisionFqdn"] = app.fqdn(app.latest)
    if app.latest_ready:
        props["latestReadyRevisionName"] = app.latest_ready
    props["outboundIpAddresses"] = ["127.0.0.1"]
    body.update(id=app.id, name=app.name, type=APP_TYPE)
    body["location"] = body.get("location") or app.environment.location
    return body


def revision_view(app: App, revision: Revision) -> Json:
    weights = app.weights()
    props: Json = {
        "createdTime": revision.created,
        "fqdn": app.fqdn(revision.name),
        "template": copy.deepcopy(revision.template),
        "active": revision.active,
        "replicas": len(revision.replicas),
        "trafficWeight": weights.get(revision.name, 0),
        "provisioningState": revision.provisioning,
        "healthState": _health(revision),
        "runningState": _running(revision),
    }
    if not revision.active:
        props["lastActiveTime"] = revision.last_active
    if revision.error and revision.provisioning == "Failed":
        props["provisioningError"] = revision.error
    return {
        "id": f"{app.id}/revisions/{revision.name}",
        "name": revision.name,
        "type": f"{APP_TYPE}/revisions",
        "properties": props,
    }


def _health(revision: Revision) -> str:
    if revision.provisioning == "Failed":
        return "Unhealthy"
    if revision.provisioning != "Provisioned" or not revision.active:
        return "None"
    ready = all(r.ready for r in revision.replicas)
    return "Healthy" if ready else "Unhealthy"


def _running(revision: Revision) -> str:
    # spec: RevisionRunningState; docs: revisions, "Running status".
    if revision.provisioning == "Failed":
        return "Failed"
    if not revision.active:
        return "Stopped"
    if revision.provisioning == "Provisioning":
        return "Processing"
    return "Running" if all(r.ready for r in revision.replicas) else "Degraded"


def replica_view(app: App, revision: Revision, replica: Replica) -> Json:
    state = "Running" if replica.ready else "NotRunning"
    container = (revision.template.get("containers") or [{}])[0]
    return {
        "id": f"{app.id}/revisions/{revision.name}/replicas/{replica.name}",
        "name": replica.name,
        "type": f"{APP_TYPE}/revisions/replicas",
        "properties": {
            "createdTime": replica.created,
            "runningState": state,
            "containers": [
                {
                    "name": container.get("name", app.name),
                    "containerId": f"containerd://{replica.name}",
                    "ready": replica.ready,
                    "started": replica.ready,
                    "restartCount": replica.restarts,
                    "runningState": "Running" if replica.ready else "Waiting",
                }
            ],
        },
    }


def environment_view(env: Environment) -> Json:
    return {
        "id": env.id,
        "name": env.name,
        "type": "Microsoft.App/managedEnvironments",
        "location": env.location,
        "tags": {},
        "properties": {
            "provisioningState": "Succeeded",
            "defaultDomain": env.default_domain,
            "staticIp": "127.0.0.1",
            "zoneRedundant": False,
        },
    }
