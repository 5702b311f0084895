"""The admin requests every runtime sends the same way: a hot swap (`POST
{endpoint}/admin/model`), the traffic split (`PUT {endpoint}/admin/traffic`), dropping the
version kept for a rollback (docs/server-contract.md).

Where the server runs differs (process, container, container group); what a request
asks, how it is signed and how its answers map onto our error tree does not, so it
lives here once. Every request is signed with the deployment's key (`admin_key`,
`common.server_key`): `X-Aliasflow-Timestamp` and `X-Aliasflow-Signature` over
"{timestamp}.{method}.{target}.{raw body}" (core/serverkeys.py), target = path and query.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlsplit

import httpx

from controller.core.errors import HealthTimeoutError, RolloutRejectedError, RuntimeUnavailableError
from controller.core.serverkeys import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from controller.core.types import DesiredState, Traffic

# Answers that say "not now" rather than "never": retry instead of reporting a rejection.
RETRYABLE_4XX = frozenset({408, 425, 429})
# The server's swap deadline sits this far inside our own timeout, so its "too slow,
# discarded" answer arrives before we give up and a late load can never be swapped in.
DEADLINE_MARGIN_S = 1.0


# Signatures made in the last `_RECENT_SECONDS`, per key. The server refuses a signature
# it has seen (409, a replay), so the same request twice within a second (a retry, a
# probe-driven repeat) takes the next second; distinct requests keep the clock's second,
# so a burst never drifts ahead of the server's 60 s window.
_RECENT_SECONDS = 120
_recent: dict[str, dict[str, int]] = {}
_signing = threading.Lock()


def signed_headers(admin_key: str, method: str, url: str, body: bytes) -> dict[str, str]:
    """The headers that sign one admin request with the deployment's key."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    with _signing:
        now = int(time.time())
        made = _recent.setdefault(admin_key, {})
        for old in [value for value, stamp in made.items() if stamp < now - _RECENT_SECONDS]:
            del made[old]
        stamp = now
        value = signature(admin_key, str(stamp), method, target, body)
        while value in made:
            stamp += 1
            value = signature(admin_key, str(stamp), method, target, body)
        made[value] = stamp
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: value}


def swap_deadline(timeout: float) -> float:
    """The load budget a hot swap asks the server for: our timeout minus the margin."""
    return max(timeout - max(DEADLINE_MARGIN_S, 0.05 * timeout), timeout / 2)


def request_hot_swap(
    endpoint: str, admin_key: str, desired: DesiredState, serving_version: str | None
) -> None:
    """Ask the server to load, check and swap to `desired`; raise why it did not.

    4xx (except the retryable ones) is a `RolloutRejectedError`: the server refused the
    version and `serving_version` keeps serving. Timeouts are `HealthTimeoutError`;
    anything else is temporary.
    """
    timeout = float(desired.health_timeout_seconds)
    body: dict[str, object] = {
        "model_uri": desired.model_uri,
        "deadline_seconds": swap_deadline(timeout),
    }
    if desired.keep_previous:
        # A watched promotion: the server keeps the replaced version loaded, so a
        # rollback is a swap back rather than a reload.
        body["keep_previous"] = True
    _admin(
        "POST",
        f"{endpoint}/admin/model",
        admin_key,
        body,
        timeout,
        f"{desired.name}: hot swap to {desired.model_uri}",
        f"version {serving_version or 'the previous one'} keeps serving",
    )


def request_traffic(endpoint: str, admin_key: str, desired: DesiredState, traffic: Traffic) -> None:
    """Tell the server its split: the canary and its share, the shadow and its share."""
    timeout = float(desired.health_timeout_seconds)
    body: dict[str, object] = {
        "canary": (
            {"model_uri": traffic.canary_uri, "weight": traffic.weight}
            if traffic.canary_uri
            else None
        ),
        "shadow": (
            {"model_uri": traffic.shadow_uri, "percent": traffic.percent}
            if traffic.shadow_uri
            else None
        ),
        "deadline_seconds": swap_deadline(timeout),
    }
    _admin(
        "PUT",
        f"{endpoint}/admin/traffic",
        admin_key,
        body,
        timeout,
        f"{desired.name}: traffic (canary {traffic.canary_uri or 'none'} at {traffic.weight}%, "
        f"shadow {traffic.shadow_uri or 'none'})",
        "the split it had keeps applying",
    )


def request_api_keys(endpoint: str, admin_key: str, desired: DesiredState) -> None:
    """Give the server the client API keys (`spec.auth.apiKeys`); an empty list lifts
    the requirement."""
    _admin(
        "PUT",
        f"{endpoint}/admin/api-keys",
        admin_key,
        {"keys": list(desired.api_keys)},
        float(desired.health_timeout_seconds),
        f"{desired.name}: client API keys",
        "the keys it had keep applying",
    )


def _admin(
    method: str,
    url: str,
    admin_key: str,
    body: dict[str, object],
    timeout: float,
    what: str,
    unchanged: str,
) -> None:
    """One signed admin request; the server's answers mapped onto our error tree."""
    content = json.dumps(body).encode()
    headers = {
        **signed_headers(admin_key, method, url, content),
        "Content-Type": "application/json",
    }
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.request(method, url, headers=headers, content=content)
    except httpx.TimeoutException as exc:
        raise HealthTimeoutError(f"{what} did not finish within {timeout:.0f}s") from exc
    except httpx.HTTPError as exc:
        raise RuntimeUnavailableError(
            f"{what}: request to {url} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if response.is_success:
        return
    status = response.status_code
    detail = server_detail(response)
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        if status == 401:
            detail += (
                " (the server holds another key than this deployment's: started with a "
                "different ALIASFLOW_ADMIN_TOKEN, or before signed requests; a recreate "
                "restarts it with the current one)"
            )
        raise RolloutRejectedError(
            f"{what}: the server refused it (HTTP {status}): {detail}; {unchanged}"
        )
    raise RuntimeUnavailableError(f"{what} failed (HTTP {status}): {detail}")


def server_detail(response: httpx.Response) -> str:
    """The `detail` of a model-server error answer, short enough for a status line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)[:500]
    return str(body)[:500]


def release_previous(endpoint: str, admin_key: str, timeout: float = 10.0) -> bool:
    """Let the server drop the version it kept for a rollback; False when it could not be
    told (the memory is then freed by the next swap or restart, nothing breaks)."""
    url = f"{endpoint}/admin/model/previous"
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.delete(url, headers=signed_headers(admin_key, "DELETE", url, b""))
    except httpx.HTTPError:
        return False
    return response.is_success
