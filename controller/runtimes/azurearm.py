"""What every Azure runtime (aci, containerapp) shares: ARM clients, retries, errors, tags.

Facts that shape it:

- The token is asked for the ARM audience of the cloud the controller talks to
  (`credential_scopes=[f"{audience}/.default"]`; the SDKs' default is the public cloud's,
  which another cloud's Entra ID does not issue), as "Multicloud: connect to all regions
  with the Azure libraries for Python" (learn.microsoft.com/azure/developer/python/sdk/
  azure-sdk-sovereign-domain) does.
- ARM throttles with 429 + `Retry-After` and fails over with 5xx; azure-core's retry
  policy honours both. It caps retries on error statuses separately (`retry_status`,
  default 3, below `retry_total`): a throttling storm of four 429s would fail at its
  default, so both are set from one budget.
- By the time an exception reaches a runtime the SDK has already retried 408, 429 and
  5xx, so what is left is either a refusal of the spec (permanent until the manifest
  changes) or an outage that outlasted the retries (temporary). Messages carry ARM's
  error code and message, never a request body, which could hold secret values.
- Tags are the ownership record: only resources tagged `aliasflow-managed=true` are ever
  observed, updated or deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from controller.core.errors import ControllerError, InvalidSpecError, RuntimeUnavailableError
from controller.core.types import DesiredState

ARM_URL = "https://management.azure.com"
# azure-core retries PATCH only on 500/503/504 and POST never; a tags-only PATCH, a JSON
# merge patch that sets values, and POST actions such as activate/deactivate are
# idempotent, so they may be retried on 429/408 like reads and DELETE.
RETRY_PATCH = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"})
RETRY_IDEMPOTENT_POST = RETRY_PATCH | {"POST"}
# azure-core's default methods without PUT: for a PUT that must not be re-sent on 5xx.
NO_PUT_RETRY = frozenset({"HEAD", "GET", "DELETE", "OPTIONS", "TRACE"})

TAG_MANAGED = "aliasflow-managed"
TAG_DEPLOYMENT = "aliasflow-deployment"
TAG_SPEC_HASH = "aliasflow-spec-hash"
TAG_MODEL_VERSION = "aliasflow-model-version"

# 4xx answers that mean "not now" rather than "never".
_TEMPORARY_4XX = frozenset({401, 403, 404, 408, 409, 423, 429})


@dataclass(frozen=True)
class RetryOptions:
    """The SDK retry policy: ARM's 429 `Retry-After` is honoured on top of these; the
    same budget bounds a runtime's own re-sent requests."""

    total: int = 10
    backoff_factor: float = 0.8
    backoff_max: float = 60.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_factor * 2**attempt))


@dataclass(frozen=True)
class RegistryCredential:
    """Pull credentials for a private registry (e.g. ACR admin or a token)."""

    server: str
    username: str
    password: str = field(repr=False)


Client = TypeVar("Client")


class ArmClients(Generic[Client]):
    """One SDK client per subscription, all with the same credential, audience and policy."""

    def __init__(
        self,
        factory: Callable[..., Client],
        credential: TokenCredential,
        *,
        base_url: str,
        audience: str,
        retry: RetryOptions,
        polling_interval: float,
        connection_verify: str | bool | None = None,
    ) -> None:
        self._factory = factory
        self._credential = credential
        self._base_url = base_url
        self._kwargs: dict[str, Any] = {
            "credential_scopes": [f"{audience.rstrip('/')}/.default"],
            "retry_total": retry.total,
            "retry_status": retry.total,
            "retry_backoff_factor": retry.backoff_factor,
            "retry_backoff_max": retry.backoff_max,
            "polling_interval": polling_interval,
        }
        if connection_verify is not None:
            self._kwargs["connection_verify"] = connection_verify
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def __call__(self, subscription_id: str) -> Client:
        with self._lock:
            client = self._clients.get(subscription_id)
            if client is None:
                client = self._factory(
                    self._credential, subscription_id, base_url=self._base_url, **self._kwargs
                )
                self._clients[subscription_id] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                close = getattr(client, "close", None)
                if close is not None:
                    close()
            self._clients.clear()


Key = tuple[str, str]  # (subscription id, resource group)


class Whereabouts:
    """Which resource group holds each owned workload, learnt from listings and writes.

    A name not known yet (a workload made by an earlier controller process) is looked
    for by listing again the resource groups whose last listing is older than `ttl`.
    """

    def __init__(self, groups: tuple[Key, ...], ttl: float, clock: Callable[[], float]) -> None:
        self._groups = groups
        self._ttl = ttl
        self._clock = clock
        self._listed_at: dict[Key, float] = {}
        self._where: dict[str, Key] = {}
        self._lock = threading.Lock()

    def listed(self, key: Key, owned: Iterable[str]) -> None:
        """A listing of `key` just found these owned names."""
        with self._lock:
            self._listed_at[key] = self._clock()
            for name in owned:
                self._where[name] = key

    def remember(self, key: Key, name: str) -> None:
        with self._lock:
            self._where[name] = key

    def forget(self, name: str) -> None:
        with self._lock:
            self._where.pop(name, None)

    def locate(self, name: str, relist: Callable[[Key], object]) -> Key | None:
        """Where `name` is; `relist(key)` lists a stale resource group (and reports back
        through `listed`)."""
        with self._lock:
            key = self._where.get(name)
            if key is not None:
                return key
            now = self._clock()
            stale = [
                k
                for k in self._groups
                if k not in self._listed_at or now - self._listed_at[k] > self._ttl
            ]
        for k in stale:
            relist(k)
        with self._lock:
            return self._where.get(name)


def base_tags(desired: DesiredState) -> dict[str, str]:
    """The tags every owned Azure resource carries: ownership, spec and recorded version."""
    return {
        TAG_MANAGED: "true",
        TAG_DEPLOYMENT: desired.name,
        TAG_SPEC_HASH: desired.spec_hash,
        TAG_MODEL_VERSION: desired.model_version,
    }


def is_owned(tags: Mapping[str, str] | None) -> bool:
    return bool(tags) and (tags or {}).get(TAG_MANAGED) == "true"


def arm_error_code(exc: HttpResponseError) -> str | None:
    code = getattr(getattr(exc, "error", None), "code", None)
    return str(code) if code else None


def arm_error_text(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code or 'Error'}: {message or ''}".strip()
    reason = getattr(exc, "reason", None) or ""
    return f"HTTP {exc.status_code} {reason}".strip()


@dataclass(frozen=True)
class ErrorVocabulary:
    """How one Azure service's refusals read: its name, and what to change by ARM code."""

    service: str
    resource: str
    advice: Mapping[str, str] = field(default_factory=dict)
    # Codes that are about the manifest whatever their HTTP status.
    spec_codes: frozenset[str] = frozenset()


def wrap_azure_error(exc: AzureError, what: str, vocabulary: ErrorVocabulary) -> ControllerError:
    """`what` names the operation and the resource, e.g. "create rg/iris-prod"."""
    if isinstance(exc, ClientAuthenticationError) and not isinstance(exc, HttpResponseError):
        return RuntimeUnavailableError(f"{what}: Azure authentication failed: {exc.message}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return _wrap_answer(exc, exc.status_code, what, vocabulary)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RuntimeUnavailableError(f"{what}: cannot reach ARM: {exc.message}")
    return RuntimeUnavailableError(f"{what}: {type(exc).__name__}: {exc.message}")


def _wrap_answer(
    exc: HttpResponseError, status: int, what: str, vocabulary: ErrorVocabulary
) -> ControllerError:
    text = arm_error_text(exc)
    code = arm_error_code(exc)
    advice = f"; {vocabulary.advice[code]}" if code and code in vocabulary.advice else ""
    if status in (401, 403):
        return RuntimeUnavailableError(
            f"{what}: ARM refused the controller's identity (HTTP {status}, {text}); "
            "check its role on the resource group"
        )
    if 400 <= status < 500 and (status not in _TEMPORARY_4XX or code in vocabulary.spec_codes):
        return InvalidSpecError(
            f"{what}: {vocabulary.service} rejected the {vocabulary.resource}: {text}{advice}"
        )
    return RuntimeUnavailableError(f"{what}: ARM answered HTTP {status} ({text}){advice}")
