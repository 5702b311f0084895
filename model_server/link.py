"""The server's side of the optional link to the controller (docs/server-contract.md).

Where the controller cannot reach a server by itself (a Container Apps replica behind
its ingress, a container its platform restarted, a scale-out), the server asks: started
with `ALIASFLOW_CONTROLLER_URL` and `ALIASFLOW_DEPLOYMENT`, it

- asks `GET {url}/api/servers/{deployment}/model` before it loads anything and boots on
  the answer instead of `MODEL_URI`; when the controller does not answer within 5 s (or
  refuses), it boots on `MODEL_URI`, as without the link. An answer that fails to load
  is not the end either: the server boots on `MODEL_URI` and reports why;
- then every `ALIASFLOW_CONTROLLER_POLL_SECONDS` asks again, swaps itself when the
  answer differs from what it serves (the hot-swap path of `POST /admin/model`: load
  beside, warm, check, swap atomically; only its own registered model), and reports
  `POST {url}/api/servers/{deployment}/report` `{"replica", "served_version", "ready"}`
  (plus `revision` and, after a refused swap, `detail`). A version that failed to load
  is not tried again for a while (every poll would reload it on every replica);
- applies the answer's `traffic` (a canary and its weight, a shadow and its share) to
  its own requests through the server's traffic API (what `PUT /admin/traffic` does),
  after any swap: a request reaches one replica of many, so every replica splits what
  it gets and the app's traffic follows the weight. The report says which split it
  applies (`traffic`) and carries its cumulative prediction counters (`metrics`,
  Prometheus text of the families the controller's analysis reads), since the
  controller cannot read one replica's `/metrics` behind the ingress.

Requests are signed with the deployment's key (`ALIASFLOW_ADMIN_TOKEN`):
`X-Aliasflow-Signature: v1,<base64 HMAC-SHA256(key, "{timestamp}.{method}.{target}.{body}")>`,
where the target is the path and `?query` as sent (`signing.signature`, the one the admin
endpoint verifies with; controller/core/serverkeys.py is the controller's side; the
server does not import the controller, the tests keep both in step).
`replica` is `CONTAINER_APP_REPLICA_NAME` on Container Apps, else the host name;
`CONTAINER_APP_REVISION` is sent as `?revision=` so that a revision being proven gets the
version it was made for.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
import orjson
from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_server.errors import ForeignModelError, ServerError
from model_server.ownership import check_own_model, own_model
from model_server.settings import ServerSettings
from model_server.signing import signature
from model_server.slot import ModelSlot

log = logging.getLogger("model_server.link")

BOOT_BUDGET_S = 5.0
# How long a split's versions may take to load (the controller waits for the report).
SPLIT_DEADLINE_S = 120.0
_ENV_NAMES = {
    "controller_url": "ALIASFLOW_CONTROLLER_URL",
    "deployment": "ALIASFLOW_DEPLOYMENT",
    "poll_seconds": "ALIASFLOW_CONTROLLER_POLL_SECONDS",
}
# The prediction families the controller's analysis reads (controller/runtimes/counters.py
# keeps the same list; the tests keep both in step). `_created` timestamps are not counts.
REPORTED_SAMPLES = frozenset(
    {
        "aliasflow_server_prediction_requests_total",
        "aliasflow_server_prediction_latency_seconds_bucket",
        "aliasflow_server_prediction_latency_seconds_count",
        "aliasflow_server_prediction_latency_seconds_sum",
        "aliasflow_server_prediction_outputs_total",
        "aliasflow_server_shadow_requests_total",
        "aliasflow_server_shadow_latency_seconds_bucket",
        "aliasflow_server_shadow_latency_seconds_count",
        "aliasflow_server_shadow_latency_seconds_sum",
        "aliasflow_server_shadow_agreement_total",
    }
)
# The controller refuses larger counters (422); a server past it reports without them.
METRICS_MAX_CHARS = 131_072


class LinkSettingsError(ValueError):
    """The link is asked for (ALIASFLOW_CONTROLLER_URL) but cannot work as configured."""


class LinkSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    controller_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_CONTROLLER_URL", "controller_url")
    )
    deployment: str | None = Field(
        default=None, validation_alias=AliasChoices("ALIASFLOW_DEPLOYMENT", "deployment")
    )
    poll_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("ALIASFLOW_CONTROLLER_POLL_SECONDS", "poll_seconds"),
    )
    replica: str | None = Field(
        default=None, validation_alias=AliasChoices("CONTAINER_APP_REPLICA_NAME", "replica")
    )
    revision: str | None = Field(
        default=None, validation_alias=AliasChoices("CONTAINER_APP_REVISION", "revision")
    )


@dataclass(frozen=True)
class Role:
    """A version beside the primary: the canary (`share`: % of requests it answers) or
    the shadow (`share`: % of requests mirrored to it)."""

    model_uri: str
    version: str
    share: int


@dataclass(frozen=True)
class Split:
    canary: Role | None = None
    shadow: Role | None = None

    def shares(self) -> Applied:
        """(canary version, weight) and (shadow version, percent), as a server reports them."""
        return (
            (self.canary.version, self.canary.share) if self.canary else None,
            (self.shadow.version, self.shadow.share) if self.shadow else None,
        )


# What a server applies: (canary version, weight) or None, (shadow version, percent) or None.
Applied = tuple[tuple[str, int] | None, tuple[str, int] | None]


class SplitControl(Protocol):
    """The server's own traffic API, as the link uses it (`PUT /admin/traffic`'s)."""

    def applied(self) -> Applied | None:
        """The split applied now; None from a server that cannot split."""
        ...

    async def apply(self, split: Split, deadline_seconds: float) -> None:
        """Load what the split needs and apply it; a `ServerError` says why not."""
        ...


class NoSplit:
    """A server without a traffic API: it splits nothing and says so (no `traffic`)."""

    def applied(self) -> Applied | None:
        return None

    async def apply(self, split: Split, deadline_seconds: float) -> None:
        raise ServerError("this server cannot split traffic (no traffic API)")


class SlotSplit:
    """The slot's roles as the link's traffic API: the change `PUT /admin/traffic` makes
    (load what no role holds yet, then switch the split in one assignment)."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot

    def applied(self) -> Applied | None:
        routes = self._slot.routes
        canary, shadow = routes.canary, routes.shadow
        return (
            (str(canary.model.version), routes.weight) if canary else None,
            (str(shadow.model.version), shadow.percent) if shadow else None,
        )

    async def apply(self, split: Split, deadline_seconds: float) -> None:
        canary, shadow = split.canary, split.shadow
        await self._slot.set_traffic(
            (canary.model_uri, canary.share) if canary else None,
            (shadow.model_uri, shadow.share) if shadow else None,
            deadline_seconds,
        )


@dataclass(frozen=True)
class Answer:
    model_uri: str
    version: str
    # None when the controller's answer carries no `traffic` (it predates the split).
    traffic: Split | None = None


def controller_link(settings: ServerSettings) -> ControllerLink | None:
    """The link the environment asks for, or None without ALIASFLOW_CONTROLLER_URL."""
    try:
        link = LinkSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_ENV_NAMES.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']} (got {e['input']!r})"
            for e in exc.errors()
        )
        raise LinkSettingsError(f"invalid model-server settings: {problems}") from None
    if not link.controller_url:
        return None
    if not link.controller_url.startswith(("http://", "https://")):
        raise LinkSettingsError(
            f"ALIASFLOW_CONTROLLER_URL: {link.controller_url!r} is not an http(s) URL"
        )
    missing = [
        name
        for name, value in (
            ("ALIASFLOW_DEPLOYMENT", link.deployment),
            ("ALIASFLOW_ADMIN_TOKEN", settings.admin_token),
        )
        if not value
    ]
    if missing:
        raise LinkSettingsError(
            f"ALIASFLOW_CONTROLLER_URL is set but {' and '.join(missing)} not: the link needs "
            "the deployment's name and its key"
        )
    assert link.deployment is not None
    assert settings.admin_token is not None
    return ControllerLink(link, link.deployment, settings.admin_token, settings)


class ControllerLink:
    def __init__(
        self,
        link: LinkSettings,
        deployment: str,
        key: SecretStr,
        settings: ServerSettings,
        boot_budget: float = BOOT_BUDGET_S,
    ) -> None:
        self.poll_seconds = link.poll_seconds
        self.replica = link.replica or socket.gethostname()
        self.revision = link.revision
        self.boot_budget = boot_budget
        self._key = key
        self._settings = settings
        base = f"{(link.controller_url or '').rstrip('/')}/api/servers/{quote(deployment, safe='')}"
        query = f"?revision={quote(self.revision, safe='')}" if self.revision else ""
        self._model_url = f"{base}/model{query}"
        self._report_url = f"{base}/report"
        # The registered model this server may serve (model_server/ownership.py).
        self.own_model = own_model(settings)
        # URI -> (when it failed, why): not asked for again until `retry_failed_after`.
        self._failed: dict[str, tuple[float, str]] = {}
        self.retry_failed_after = max(60.0, 6 * self.poll_seconds)
        self._reachable = True
        self._client: httpx.AsyncClient | None = None
        # Whether the boot applied the controller's answer (version and split): until
        # then the server is not ready (/readyz), though it may already answer.
        self.settled = False
        # How the server splits its own requests, and its counters; `attach` sets both.
        self.split: SplitControl = NoSplit()
        self._counters: Callable[[], bytes] | None = None

    def attach(
        self, split: SplitControl | None = None, counters: Callable[[], bytes] | None = None
    ) -> None:
        """The server's traffic API and its Prometheus text (the app has both)."""
        if split is not None:
            self.split = split
        if counters is not None:
            self._counters = counters

    # -- the lifespan's two steps ----------------------------------------------------------

    async def boot(self, slot: ModelSlot) -> None:
        """Load what the controller says (within the boot budget), else `MODEL_URI`."""
        answer = await self._ask_within(self.boot_budget)
        fallback = self._settings.model_uri
        if answer is None or answer.model_uri == fallback:
            await slot.boot()
        else:
            log.info("the controller says %s (MODEL_URI is %s)", answer.model_uri, fallback)
            try:
                await slot.boot(answer.model_uri)
            except ServerError as exc:
                self._failed[answer.model_uri] = (time.monotonic(), str(exc))
                log.error(
                    "%s from the controller did not load (%s); booting on MODEL_URI %s",
                    answer.model_uri,
                    exc,
                    fallback,
                )
                await slot.boot()
        detail = None
        if answer is not None and answer.traffic is not None:
            detail = await self._apply(answer.traffic)
        self.settled = True
        await self._report(slot, detail or self._failure_detail())

    async def follow(self, slot: ModelSlot) -> None:
        """Ask, swap when told, report: every poll interval, until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.poll_seconds)
                try:
                    await self.tick(slot)
                except Exception:  # a bug of ours must not end the link for good
                    log.exception("controller link: this poll failed; the next one tries again")
        finally:
            if self._client is not None:
                await self._client.aclose()

    async def tick(self, slot: ModelSlot) -> None:
        answer = await self._ask(min(BOOT_BUDGET_S, self.poll_seconds))
        detail: str | None = None
        if answer is not None and not self._serves(slot, answer):
            # A load can outlast the controller's memory of this replica (three polls):
            # say what is served before the swap, and again after it.
            await self._report(slot, self._failure_detail())
            detail = await self._swap(slot, answer)
        # After the swap: a promoted canary is swapped to (instant) before its role goes.
        if answer is not None and answer.traffic is not None and detail is None:
            if not self._splits(answer.traffic):
                await self._report(slot, self._failure_detail())
            detail = await self._apply(answer.traffic)
        await self._report(slot, detail or self._failure_detail())

    # -- swapping -------------------------------------------------------------------------

    def _serves(self, slot: ModelSlot, answer: Answer) -> bool:
        current = slot.current
        if current is None:
            return False
        return current.model_uri == answer.model_uri or (
            current.name == self.own_model and current.version == answer.version
        )

    async def _swap(self, slot: ModelSlot, answer: Answer) -> str | None:
        uri = answer.model_uri
        failed = self._failed.get(uri)
        if failed is not None and time.monotonic() - failed[0] < self.retry_failed_after:
            return f"not serving {uri}: {failed[1]}"
        log.info("the controller says %s: swapping", uri)
        try:
            await slot.swap(uri, False, None)
        except ServerError as exc:
            self._failed[uri] = (time.monotonic(), str(exc))
            return f"not serving {uri}: {exc}"
        self._failed.pop(uri, None)
        return None

    def _splits(self, split: Split) -> bool:
        return (self.split.applied() or (None, None)) == split.shares()

    async def _apply(self, split: Split) -> str | None:
        """Apply the controller's split unless it is applied; why not, when it fails."""
        if self._splits(split):
            return None
        key = f"traffic {split.shares()}"
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[0] < self.retry_failed_after:
            return f"not applying {key}: {failed[1]}"
        log.info("the controller says split %s: applying", split.shares())
        try:
            await self.split.apply(split, SPLIT_DEADLINE_S)
        except ServerError as exc:
            self._failed[key] = (time.monotonic(), str(exc))
            log.warning("split %s not applied: %s", split.shares(), exc)
            return f"not applying {key}: {exc}"
        self._failed.pop(key, None)
        return None

    def _failure_detail(self) -> str | None:
        if not self._failed:
            return None
        uri, (_, why) = max(self._failed.items(), key=lambda item: item[1][0])
        return f"not serving {uri}: {why}"

    # -- the two requests -----------------------------------------------------------------

    async def _ask_within(self, budget: float) -> Answer | None:
        """Ask until an answer or a refusal, retrying what may pass (5xx, no connection)."""
        deadline = time.monotonic() + budget
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "the controller did not answer within %.0fs; booting on MODEL_URI", budget
                )
                return None
            try:
                return await self._ask(left, retryable=True)
            except _TryAgainError:
                await asyncio.sleep(min(0.25, max(deadline - time.monotonic(), 0)))

    async def _ask(self, wait_s: float, retryable: bool = False) -> Answer | None:
        try:
            response = await self._send("GET", self._model_url, b"", wait_s)
        except httpx.HTTPError as exc:
            self._unreachable(f"{type(exc).__name__}: {exc}")
            if retryable:
                raise _TryAgainError from None
            return None
        if response.status_code >= 500 and retryable:
            raise _TryAgainError
        if response.status_code != 200:
            self._unreachable(f"HTTP {response.status_code}: {response.text[:200]}")
            return None
        try:
            body = response.json()
            answer = Answer(
                str(body["model_uri"]), str(body["version"]), _split(body.get("traffic"))
            )
        except (ValueError, KeyError, TypeError):
            self._unreachable(
                f"an answer that is not {{model_uri, version, traffic}}: {response.text[:200]}"
            )
            return None
        self._reached()
        roles = [answer.model_uri]
        if answer.traffic is not None:
            roles += [r.model_uri for r in (answer.traffic.canary, answer.traffic.shadow) if r]
        for uri in roles:
            try:
                check_own_model(self.own_model, uri)
            except ForeignModelError as exc:
                self._failed[uri] = (
                    time.monotonic(),
                    f"refused: not a version of this server's model {self.own_model!r}",
                )
                log.error("the controller says %s; ignored: %s", uri, exc)
                return None
        return answer

    async def _report(self, slot: ModelSlot, detail: str | None) -> None:
        current = slot.current
        body = {
            "replica": self.replica,
            "served_version": current.version if current is not None else None,
            "ready": current is not None,
            "revision": self.revision,
            "detail": detail,
            "traffic": _applied_json(self.split.applied()),
            "metrics": self._metrics_text(),
        }
        try:
            response = await self._send("POST", self._report_url, orjson.dumps(body), BOOT_BUDGET_S)
        except httpx.HTTPError as exc:
            self._unreachable(f"{type(exc).__name__}: {exc}")
            return
        if response.is_success:
            self._reached()
        else:
            self._unreachable(f"report refused: HTTP {response.status_code} {response.text[:200]}")

    def _metrics_text(self) -> str | None:
        """This server's prediction counters, filtered to what the controller reads."""
        if self._counters is None:
            return None
        text = reported_counters(self._counters().decode())
        if len(text) > METRICS_MAX_CHARS:
            log.warning(
                "prediction counters are %d characters, over the %d a report may carry; "
                "reported without them",
                len(text),
                METRICS_MAX_CHARS,
            )
            return None
        return text

    async def _send(self, method: str, url: str, body: bytes, wait_s: float) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient()
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        stamp = str(int(time.time()))
        headers = {
            "X-Aliasflow-Timestamp": stamp,
            "X-Aliasflow-Signature": signature(
                self._key.get_secret_value(), stamp, method, target, body
            ),
            "Content-Type": "application/json",
        }
        return await self._client.request(
            method, url, content=body, headers=headers, timeout=max(wait_s, 0.1)
        )

    def _unreachable(self, why: str) -> None:
        if self._reachable:
            log.warning("controller link: %s (serving on; logged again once it recovers)", why)
        self._reachable = False

    def _reached(self) -> None:
        if not self._reachable:
            log.info("controller link: the controller answers again")
        self._reachable = True


def reported_counters(text: str) -> str:
    """The sample lines of the families the controller reads, from Prometheus text."""
    kept = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in REPORTED_SAMPLES:
                kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _split(raw: Any) -> Split | None:
    """The answer's `traffic`; None when it has none. Raises what does not parse."""
    if raw is None:
        return None
    canary, shadow = raw["canary"], raw["shadow"]
    return Split(
        _role(canary, "weight") if canary is not None else None,
        _role(shadow, "percent") if shadow is not None else None,
    )


def _role(raw: Any, share: str) -> Role:
    value = raw[share]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise ValueError(f"{share}: {value!r} is not a share of 0-100")
    return Role(str(raw["model_uri"]), str(raw["version"]), value)


def _applied_json(applied: Applied | None) -> dict[str, Any] | None:
    if applied is None:
        return None
    canary, shadow = applied
    return {
        "canary": {"version": canary[0], "weight": canary[1]} if canary else None,
        "shadow": {"version": shadow[0], "percent": shadow[1]} if shadow else None,
    }


class _TryAgainError(Exception):
    """The controller may answer on the next try (no connection yet, a 5xx)."""
