"""Image tags on our Azure Container Registry resolved to digests.

A tag moves; a digest does not. The reconciler asks this resolver for the image of every
non-local deployment, runs the digest, and records it in the history, so a redeploy of
an old sync reproduces exactly what ran. Images on other registries keep their tag.

Lookups are cached for a short time (one poll pass) so the cheap full pass over a
thousand manifests that share one image asks ACR once, not a thousand times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.containerregistry import ContainerRegistryClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError

from controller.core.errors import InvalidSpecError
from controller.runtimes.aci.errors import wrap_azure_error

log = logging.getLogger(__name__)

ACR_AUDIENCE = "https://containerregistry.azure.net"


def split_image(image: str) -> tuple[str, str, str | None, str | None]:
    """(registry host, repository, tag, digest); Docker Hub images have host ''."""
    rest = image
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
    host = ""
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    tag = None
    if ":" in rest.rsplit("/", 1)[-1]:
        rest, tag = rest.rsplit(":", 1)
    return host, rest, tag, digest


class AcrImageResolver:
    """`resolve(image)` → `login_server/repo@sha256:…` for images on `login_server`."""

    def __init__(
        self,
        login_server: str,
        credential: TokenCredential,
        *,
        endpoint: str | None = None,
        audience: str = ACR_AUDIENCE,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.login_server = login_server.lower().removeprefix("https://").rstrip("/")
        # The API endpoint is the login server in Azure; a test points it elsewhere.
        self._client = ContainerRegistryClient(
            endpoint or f"https://{self.login_server}",
            credential,
            audience=audience,
            **(client_kwargs or {}),
        )
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        #: Registry lookups made (cache misses), for tests and the benchmark.
        self.lookups = 0

    def __call__(self, image: str) -> str:
        return self.resolve(image)

    def resolve(self, image: str) -> str:
        host, repository, tag, digest = split_image(image)
        if digest is not None or host.lower() != self.login_server:
            return image  # already pinned, or not our registry: left as written
        now = self._clock()
        with self._lock:
            cached = self._cache.get(image)
            if cached is not None and now - cached[0] < self._cache_seconds:
                return cached[1]
        reference = tag or "latest"
        try:
            properties = self._client.get_manifest_properties(repository, reference)
        except ResourceNotFoundError as exc:
            raise InvalidSpecError(
                f"image {image}: tag {reference!r} not found in {self.login_server}/{repository}"
            ) from exc
        except AzureError as exc:
            raise wrap_azure_error(exc, f"resolve image {image}") from exc
        resolved = f"{host}/{repository}@{properties.digest}"
        with self._lock:
            self.lookups += 1
            self._cache[image] = (now, resolved)
        log.debug("resolved %s to %s", image, resolved)
        return resolved

    def close(self) -> None:
        self._client.close()
