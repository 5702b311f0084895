"""The MLflow adapter behind the `Registry` seam.

Everything MLflow-specific stops here: the client is built per instance (never at
import), MLflow's exceptions become the controller's error tree at this edge, and the
alias maps come from `search_registered_models` pages of up to 1000 models, so one poll
of a registry with N models costs ceil(N / 1000) calls.

MLflow's REST client retries connection errors and 5xx with exponential backoff, by
default 7 times with a 120 s timeout: minutes before an unreachable server surfaces.
The controller has its own retry loop (the poller's interval, the reconciler's backoff
on `TemporaryError`), so this adapter asks MLflow to give up within a few seconds. The
knobs are environment variables MLflow reads on every request; they are process-wide,
so they are only defaulted (`setdefault`), and an operator's explicit values win.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from controller.core.errors import (
    AliasNotFoundError,
    ControllerError,
    ModelNotFoundError,
    RegistryRefusedError,
    RegistryUnavailableError,
)
from controller.core.ports import AliasMaps, ModelVersionInfo

# Measured against a port with nothing listening: ~2 s until RegistryUnavailableError.
FAST_FAIL_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

# The largest page MLflow's search_registered_models accepts.
MAX_PAGE_SIZE = 1000


def configure_fast_failure(environ: MutableMapping[str, str] | None = None) -> None:
    """Default MLflow's HTTP retry/timeout settings so an outage surfaces in seconds."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    for key, value in FAST_FAIL_ENV.items():
        target.setdefault(key, value)


class MlflowRegistry:
    """`Registry` over a real MLflow tracking server.

    `page_size` exists for tests of the paging loop; production uses the maximum, 1000.
    `search_calls` counts `search_registered_models` calls, so scale checks can assert
    one call per page.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        fast_fail: bool = True,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
        if fast_fail:
            configure_fast_failure()
        self.tracking_uri = tracking_uri
        self.page_size = page_size
        self.search_calls = 0
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @property
    def client(self) -> MlflowClient:
        """The underlying client, for callers that need MLflow APIs beyond the seam."""
        return self._client

    def resolve_alias(self, model_name: str, alias: str) -> ModelVersionInfo:
        # MLflow answers a missing alias of an existing model with INVALID_PARAMETER_VALUE
        # ("Registered model alias X not found") and a missing model with
        # RESOURCE_DOES_NOT_EXIST.
        missing = {
            "RESOURCE_DOES_NOT_EXIST": ModelNotFoundError(
                f"registered model {model_name!r} not found (resolving alias {alias!r})"
            ),
            "INVALID_PARAMETER_VALUE": AliasNotFoundError(
                f"alias {alias!r} of model {model_name!r} is not set"
            ),
        }
        with _calling_mlflow(f"resolving {model_name}@{alias}", missing):
            version = self._client.get_model_version_by_alias(model_name, alias)
        return _version_info(version)

    def get_version(self, model_name: str, version: str) -> ModelVersionInfo:
        not_found = ModelNotFoundError(f"model {model_name!r} version {version} not found")
        missing = {"RESOURCE_DOES_NOT_EXIST": not_found, "INVALID_PARAMETER_VALUE": not_found}
        with _calling_mlflow(f"reading {model_name} version {version}", missing):
            found = self._client.get_model_version(model_name, str(version))
        return _version_info(found)

    def alias_maps(self) -> AliasMaps:
        """Every model's alias map; one `search_registered_models` call per page.

        Moving an alias does not touch a model's `last_updated_timestamp`, so there is no
        cheaper "what changed since" query: the whole map is read and diffed.
        """
        maps: AliasMaps = {}
        page_token: str | None = None
        while True:
            self.search_calls += 1
            with _calling_mlflow("listing registered models"):
                page = self._client.search_registered_models(
                    max_results=self.page_size, page_token=page_token
                )
            for model in page:
                maps[model.name] = {
                    str(alias): str(version) for alias, version in (model.aliases or {}).items()
                }
            page_token = page.token or None
            if page_token is None:
                return maps

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        missing = {
            "RESOURCE_DOES_NOT_EXIST": ModelNotFoundError(
                f"model {model_name!r} version {version} not found"
            )
        }
        with _calling_mlflow(f"setting {model_name}@{alias} -> {version}", missing):
            self._client.set_registered_model_alias(model_name, alias, str(version))

    def run_metrics(self, run_id: str) -> dict[str, float]:
        not_found = ModelNotFoundError(f"run {run_id} not found")
        missing = {"RESOURCE_DOES_NOT_EXIST": not_found, "INVALID_PARAMETER_VALUE": not_found}
        with _calling_mlflow(f"reading the metrics of run {run_id}", missing):
            run = self._client.get_run(run_id)
        return {str(key): float(value) for key, value in run.data.metrics.items()}

    def set_version_tag(self, model_name: str, version: str, key: str, value: str) -> None:
        not_found = ModelNotFoundError(f"model {model_name!r} version {version} not found")
        with _calling_mlflow(
            f"tagging {model_name} version {version}", {"RESOURCE_DOES_NOT_EXIST": not_found}
        ):
            self._client.set_model_version_tag(model_name, str(version), key, value)

    def quarantined_versions(self, model_name: str) -> dict[str, str]:
        escaped = model_name.replace("'", "\\'")
        with _calling_mlflow(f"listing the versions of {model_name}"):
            versions = self._client.search_model_versions(filter_string=f"name = '{escaped}'")
        found = (_version_info(version) for version in versions)
        return {info.version: info.quarantined for info in found if info.quarantined}


@contextmanager
def _calling_mlflow(
    what: str, missing: Mapping[str, ControllerError] | None = None
) -> Iterator[None]:
    """MLflow's exceptions become ours: `missing` maps MLflow error codes to not-found
    errors; connection failures and 5xx are temporary, other refusals permanent."""
    try:
        yield
    except MlflowException as exc:
        if missing and exc.error_code in missing:
            raise missing[exc.error_code] from exc
        raise _translate(exc, what) from exc
    except requests.RequestException as exc:
        raise _unavailable(exc, what) from exc


def _version_info(version: Any) -> ModelVersionInfo:
    return ModelVersionInfo(
        model_name=str(version.name),
        version=str(version.version),
        run_id=version.run_id or None,
        status=str(version.status or "READY"),
        tags={str(k): str(v) for k, v in (version.tags or {}).items()},
    )


def http_status(exc: MlflowException) -> int:
    """The HTTP status MLflow maps the error code to (500 for codes it does not know)."""
    status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
    return status


def _translate(exc: MlflowException, doing: str) -> Exception:
    """Any other MLflow error: 5xx and transport failures are temporary, 4xx permanent.

    A connection failure reaches us as an MlflowException with INTERNAL_ERROR (HTTP 500
    equivalent) after MLflow's own retries, so it lands on the temporary branch.
    """
    status = http_status(exc)
    if status >= 500 or status in (408, 429):
        return RegistryUnavailableError(f"MLflow unavailable while {doing}: {exc.message}")
    return RegistryRefusedError(f"MLflow refused {doing}: {exc.error_code}: {exc.message}")


def _unavailable(exc: Exception, doing: str) -> RegistryUnavailableError:
    return RegistryUnavailableError(f"MLflow unreachable while {doing}: {exc}")
