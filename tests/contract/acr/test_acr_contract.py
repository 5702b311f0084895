"""The official ACR data-plane examples, replayed through `AcrImageResolver` with respx.

Examples: Azure/azure-rest-api-specs, specification/containerregistry/data-plane/
Azure.ContainerRegistry/stable/2021-07-01/examples/ (GetTagAttributes,
GetManifestAttributes, PostRefreshToken, PostAccessToken), under tests/data/azure.
One tag resolution walks all four: the anonymous request is challenged, the AAD token is
exchanged for an ACR refresh token and that for an access token, then the tag's digest
is read and the manifest of that digest.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs

import httpx
import respx

from controller.runtimes.aci.acr import AcrImageResolver
from tests.contract.examples import (
    ACR_EXAMPLES,
    StaticToken,
    example,
    httpx_transport,
    response_body,
)

REGISTRY = "acrapi.azurecr-test.io"
BASE = f"https://{REGISTRY}"


def test_a_tag_resolves_to_the_digest_of_its_manifest() -> None:
    tag = response_body(ACR_EXAMPLES, "GetTagAttributes")
    manifest = response_body(ACR_EXAMPLES, "GetManifestAttributes")
    # One image: the tag example's tag points at the manifest example's digest.
    repository, digest = manifest["imageName"], manifest["manifest"]["digest"]
    tag["imageName"], tag["tag"]["digest"] = repository, digest
    refresh = response_body(ACR_EXAMPLES, "PostRefreshToken")
    # The example's token is an elided placeholder ("eyJ0eXAi...Ii..."), but the SDK reads
    # the refresh token's `exp` claim (azure.containerregistry._helpers._parse_exp_time),
    # so the same field carries a JWT-shaped token, as ACR really sends.
    claims = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3600}).encode())
    refresh["refresh_token"] = f"e30.{claims.decode().rstrip('=')}.signature"
    access = response_body(ACR_EXAMPLES, "PostAccessToken")
    credential = StaticToken()
    challenge = {
        "WWW-Authenticate": f'Bearer realm="{BASE}/oauth2/token",service="{REGISTRY}",'
        f'scope="repository:{repository}:metadata_read"'
    }

    def authorized(answer: dict[str, object]) -> object:
        def respond(request: httpx.Request) -> httpx.Response:
            if request.headers.get("authorization") != f"Bearer {access['access_token']}":
                return httpx.Response(401, headers=challenge, json={"errors": []})
            return httpx.Response(200, json=answer)

        return respond

    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as acr:
        acr.get(f"/acr/v1/{repository}/_tags/latest-tag").mock(side_effect=authorized(tag))
        acr.get(f"/acr/v1/{repository}/_manifests/{digest}").mock(side_effect=authorized(manifest))
        exchange = acr.post("/oauth2/exchange").respond(200, json=refresh)
        token = acr.post("/oauth2/token").respond(200, json=access)
        resolver = AcrImageResolver(
            REGISTRY, credential, client_kwargs={"transport": httpx_transport()}
        )
        try:
            resolved = resolver.resolve(f"{REGISTRY}/{repository}:latest-tag")
        finally:
            resolver.close()

    assert resolved == f"{REGISTRY}/{repository}@{digest}"
    sent = parse_qs(exchange.calls.last.request.content.decode())
    parameters = example(ACR_EXAMPLES, "PostRefreshToken")["parameters"]
    assert sent["grant_type"] == [parameters["grant_type"]]
    assert sent["service"] == [REGISTRY]
    assert sent["access_token"] == ["replay-token"]
    asked = parse_qs(token.calls.last.request.content.decode())
    assert asked["grant_type"] == [
        example(ACR_EXAMPLES, "PostAccessToken")["parameters"]["grant_type"]
    ]
    assert asked["refresh_token"] == [refresh["refresh_token"]]
    # The AAD token was asked for ACR's audience (public cloud default).
    assert set(credential.scopes) == {"https://containerregistry.azure.net/.default"}
