"""Canary and shadow on Container Apps: the split every replica applies, its record on
the app's tags, and what the replicas' reports say of it.

The ingress sends a request to one replica of many, and the controller cannot reach a
replica by itself, so the split cannot be one PUT to one server as on the other
targets. It travels the server link instead (docs/server-contract.md): the controller
records it (`ServerLinks.decide_traffic`), every replica reads it on its next poll and
splits its own requests by it, so the app's traffic follows the weight in aggregate.
The platform's revision weights are not used for it: a revision is a template change,
and a model version is not one here (a hot swap loads it into the running replicas).

The split is also written on the app's tags (a tags-only PATCH makes no revision), so a
restarted controller tells the replicas the same split rather than none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.core.types import Traffic
from controller.runtimes.link import AppliedTraffic, LinkTraffic, ReplicaReport, RoleModel

TAG_CANARY = "aliasflow-canary"
TAG_SHADOW = "aliasflow-shadow"


def link_traffic(traffic: Traffic) -> LinkTraffic:
    """The controller's split (URIs and shares) as the link tells it to replicas."""
    canary = (
        RoleModel(traffic.canary_uri, _version(traffic.canary_uri), traffic.weight)
        if traffic.canary_uri
        else None
    )
    shadow = (
        RoleModel(traffic.shadow_uri, _version(traffic.shadow_uri), traffic.percent)
        if traffic.shadow_uri
        else None
    )
    return LinkTraffic(canary, shadow)


def _version(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def traffic_tags(tags: Mapping[str, str], traffic: LinkTraffic) -> dict[str, str]:
    """`tags` with the split recorded as `<version>@<share>` (absent roles: no tag)."""
    updated = {k: v for k, v in tags.items() if k not in (TAG_CANARY, TAG_SHADOW)}
    if traffic.canary is not None:
        updated[TAG_CANARY] = f"{traffic.canary.version}@{traffic.canary.share}"
    if traffic.shadow is not None:
        updated[TAG_SHADOW] = f"{traffic.shadow.version}@{traffic.shadow.share}"
    return updated


def traffic_from_tags(tags: Mapping[str, str], model_name: str | None) -> LinkTraffic:
    """The split recorded on the app; a tag that does not parse is no split (a person
    edited it: the next decision writes it again)."""
    if not model_name:
        return LinkTraffic()
    return LinkTraffic(
        _role(tags.get(TAG_CANARY), model_name), _role(tags.get(TAG_SHADOW), model_name)
    )


def _role(value: str | None, model_name: str) -> RoleModel | None:
    if not value or value.count("@") != 1:
        return None
    version, share = value.split("@")
    if not version.isdigit() or not share.isdigit() or int(share) > 100:
        return None
    return RoleModel(f"models:/{model_name}/{version}", version, int(share))


def applied_traffic(
    reports: Iterable[ReplicaReport], decided: LinkTraffic
) -> tuple[AppliedTraffic, str]:
    """The split the ready replicas apply, and why it is not the decided one yet.

    Once every ready replica reports the decided split, it is the deployment's. Until
    then the split is one a lagging replica reports (not the decided one: what is not
    done everywhere is not claimed, so a wait for it goes on), as a hot swap's version
    is pending until every replica serves it. A replica that has not reported ready is
    not counted here: the served version already waits for it.
    """
    wanted = decided.applied()
    ready = [r for r in reports if r.ready]
    behind = sorted(
        (r for r in ready if (r.traffic or AppliedTraffic()) != wanted),
        key=lambda r: r.replica,
    )
    if not behind:
        return wanted, ""
    names = ", ".join(r.replica for r in behind[:3])
    return (
        behind[0].traffic or AppliedTraffic(),
        f"{len(behind)} of {len(ready)} replicas do not apply the traffic split yet ({names})",
    )
