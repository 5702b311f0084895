"""Download a registered model version over MLflow's REST API, without importing MLflow.

`import mlflow` takes seconds; a model with a boot file (bootfile.py) is ready in less
than that once its files are here. So the ordinary case — an http(s) tracking server
that proxies artifacts (`mlflow-artifacts:/...`), a bearer token or basic auth — is done
here with httpx, by the endpoints MLflow's own client calls (under /api/2.0/):
`mlflow/registered-models/alias`, `mlflow/model-versions/get-download-uri`,
`mlflow-artifacts/artifacts?path=` (listing) and `mlflow-artifacts/artifacts/<path>`.
Anything else — another artifact store, client certificates, any error answer — raises
`NotHandledHereError`, and the caller uses MLflow's client as before (with MLflow's own
error messages).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

_ARTIFACTS = "mlflow-artifacts:/"


class NotHandledHereError(Exception):
    """Leave this download to MLflow's client."""


def download(
    tracking_uri: str, name: str, version: str | None, alias: str | None, target: Path
) -> tuple[Path, str]:
    """Fetch `models:/name/version` (or `@alias`) into `target`; (model dir, version)."""
    if not tracking_uri.startswith(("http://", "https://")):
        raise NotHandledHereError(tracking_uri)
    if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        raise NotHandledHereError("client certificates")
    base = tracking_uri.rstrip("/")
    timeout = httpx.Timeout(60.0, connect=5.0)
    with httpx.Client(auth=_auth(), verify=_verify(), timeout=timeout, trust_env=False) as client:
        if alias is not None:
            found = _get(
                client, f"{base}/api/2.0/mlflow/registered-models/alias", name=name, alias=alias
            )
            version = str(found["model_version"]["version"])
        assert version is not None
        uri = _get(
            client,
            f"{base}/api/2.0/mlflow/model-versions/get-download-uri",
            name=name,
            version=version,
        )["artifact_uri"]
        if (
            not isinstance(uri, str)
            or not uri.startswith(_ARTIFACTS)
            or uri.startswith(_ARTIFACTS + "/")
        ):
            raise NotHandledHereError(f"artifact URI {uri!r}")
        root = uri.removeprefix(_ARTIFACTS).strip("/")
        _fetch_tree(client, base, root, root, target)
    if not (target / "MLmodel").is_file():
        raise NotHandledHereError("no MLmodel file in the download")
    return target, version


def _fetch_tree(client: httpx.Client, base: str, root: str, path: str, target: Path) -> None:
    listing = _get(client, f"{base}/api/2.0/mlflow-artifacts/artifacts", path=path)
    for entry in listing.get("files", []):
        full = f"{path}/{entry['path'].rsplit('/', 1)[-1]}"
        local = target / full.removeprefix(root).lstrip("/")
        if entry.get("is_dir"):
            local.mkdir(parents=True, exist_ok=True)
            _fetch_tree(client, base, root, full, target)
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        with client.stream(
            "GET", f"{base}/api/2.0/mlflow-artifacts/artifacts/{quote(full)}"
        ) as got:
            if got.status_code != 200:
                raise NotHandledHereError(f"GET {full}: HTTP {got.status_code}")
            with open(local, "wb") as handle:
                for chunk in got.iter_bytes():
                    handle.write(chunk)


def _get(client: httpx.Client, url: str, **params: str) -> dict[str, Any]:
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise NotHandledHereError(str(exc)) from exc
    if response.status_code != 200:
        raise NotHandledHereError(f"HTTP {response.status_code} from {url}")
    body = response.json()
    if not isinstance(body, dict):
        raise NotHandledHereError(f"unexpected answer from {url}")
    return body


def _auth() -> httpx.Auth | None:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return _Bearer(token)
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        return httpx.BasicAuth(user, password)
    return None


def _verify() -> bool | str:
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
