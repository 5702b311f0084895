"""An azure-core transport on httpx, so `respx` can answer the real SDK's requests.

azure-core sends through `requests` by default and respx only intercepts httpx. Passing
this transport as `transport=` keeps the whole SDK pipeline real (auth, retries, LRO
polling, deserialisation) and swaps only the last hop; the alternative, a `requests`
mocking library, would be a second HTTP-mocking dependency beside the declared respx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import CaseInsensitiveDict


class HttpxTransport(HttpTransport):  # type: ignore[misc]
    def __init__(self) -> None:
        self._client = httpx.Client()

    def __enter__(self) -> HttpxTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        pass

    def close(self) -> None:
        self._client.close()

    def send(self, request: Any, **kwargs: Any) -> HttpResponseImpl:
        body = getattr(request, "content", None)
        if body is None:
            body = getattr(request, "data", None)
        response = self._client.request(
            request.method, request.url, headers=dict(request.headers), content=body
        )
        content = response.content

        def stream(**_: Any) -> Iterator[bytes]:
            yield content

        return HttpResponseImpl(
            request=request,
            internal_response=response,
            status_code=response.status_code,
            reason=response.reason_phrase,
            content_type=response.headers.get("content-type", ""),
            headers=CaseInsensitiveDict(response.headers),
            stream_download_generator=stream,
        )
