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
  is not tried again for a while (every poll would reload it on every replica).

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
from dataclasses import dataclass
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
_ENV_NAMES = {
    "controller_url": "ALIASFLOW_CONTROLLER_URL",
    "deployment": "ALIASFLOW_DEPLOYMENT",
    "poll_seconds": "ALIASFLOW_CONTROLLER_POLL_SECONDS",
}


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
class Answer:
    model_uri: str
    version: str


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
        await self._report(slot, self._failure_detail())

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
            answer = Answer(str(body["model_uri"]), str(body["version"]))
        except (ValueError, KeyError, TypeError):
            self._unreachable(
                f"an answer that is not {{model_uri, version}}: {response.text[:200]}"
            )
            return None
        self._reached()
        try:
            check_own_model(self.own_model, answer.model_uri)
        except ForeignModelError as exc:
            self._failed[answer.model_uri] = (
                time.monotonic(),
                f"refused: not a version of this server's model {self.own_model!r}",
            )
            log.error("the controller says %s; ignored: %s", answer.model_uri, exc)
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


class _TryAgainError(Exception):
    """The controller may answer on the next try (no connection yet, a 5xx)."""
