"""Official example payloads (tests/data/azure/...) and the httpx seam respx needs.

The Azure SDKs send through azure-core's requests transport, which respx cannot see;
`HttpXTransport` (azure-core-experimental, Microsoft's httpx transport for azure-core)
sends the same pipeline's requests through httpx, so respx replays the examples through
the real SDK: its serializer, LRO poller, retry and auth policies.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from azure.core.credentials import AccessToken
from azure.core.experimental.transport import HttpXTransport

DATA = Path(__file__).resolve().parents[1] / "data" / "azure"
ACI_EXAMPLES = DATA / "containerinstance" / "2023-05-01" / "examples"
ACR_EXAMPLES = DATA / "containerregistry" / "2021-07-01" / "examples"


def example(folder: Path, name: str) -> dict[str, Any]:
    """One example file: {"parameters": ..., "responses": {"200": {"body": ...}}}."""
    loaded: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    return loaded


def response_body(folder: Path, name: str, status: str = "200") -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(example(folder, name)["responses"][status]["body"])
    return body


class StaticToken:
    """A credential for replays: respx answers, so no identity provider is asked."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("replay-token", int(time.time()) + 3600)


class _FormClient(httpx.Client):
    """HttpXTransport hands a form body (a dict) to httpx as `content`, which httpx 0.28
    refuses; the ACR token exchange posts forms. Encode them as azure-core's requests
    transport would."""

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        for key in ("content", "data"):
            form = kwargs.get(key)
            if isinstance(form, dict):
                del kwargs[key]
                # As requests does: a str (also a str enum) is sent as its own text.
                kwargs["content"] = urlencode(
                    {k: v.encode() if isinstance(v, str) else v for k, v in form.items()}
                ).encode()
        return super().request(method, url, **kwargs)


def httpx_transport() -> HttpXTransport:
    """An azure-core transport over httpx, so respx sees the SDK's requests."""
    return HttpXTransport(client=_FormClient(trust_env=False))
