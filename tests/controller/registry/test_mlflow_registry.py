"""MlflowRegistry against a real MLflow server: lookups, error mapping, paging, outage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
from mlflow import MlflowClient

from controller.core.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    PermanentError,
    RegistryRefusedError,
    RegistryUnavailableError,
)
from controller.core.ports import Registry
from controller.registry.mlflow_registry import (
    FAST_FAIL_ENV,
    MlflowRegistry,
    configure_fast_failure,
)
from controller.runtimes.netutil import free_port

MakeVersions = Callable[[str, int], list[str]]


def test_resolve_alias_returns_version_and_run(
    tracking_uri: str, unique_model_name: str, make_versions: MakeVersions
) -> None:
    make_versions(unique_model_name, 2)
    registry: Registry = MlflowRegistry(tracking_uri)
    registry.set_alias(unique_model_name, "champion", "1")

    info = registry.resolve_alias(unique_model_name, "champion")

    assert info.model_name == unique_model_name
    assert info.version == "1"
    assert info.run_id
    assert registry.get_version(unique_model_name, "1") == info
    assert registry.get_version(unique_model_name, "2").version == "2"


def test_missing_alias_model_and_version_map_to_permanent_errors(
    tracking_uri: str, unique_model_name: str, make_versions: MakeVersions
) -> None:
    make_versions(unique_model_name, 1)
    registry = MlflowRegistry(tracking_uri)

    with pytest.raises(AliasNotFoundError, match="champion"):
        registry.resolve_alias(unique_model_name, "champion")
    with pytest.raises(ModelNotFoundError):
        registry.resolve_alias(f"{unique_model_name}-absent", "champion")
    with pytest.raises(ModelNotFoundError):
        registry.get_version(unique_model_name, "7")
    with pytest.raises(ModelNotFoundError):
        registry.get_version(f"{unique_model_name}-absent", "1")
    with pytest.raises(ModelNotFoundError):
        registry.set_alias(unique_model_name, "champion", "7")


def test_reserved_alias_is_refused_permanently(
    tracking_uri: str, unique_model_name: str, make_versions: MakeVersions
) -> None:
    make_versions(unique_model_name, 1)
    with pytest.raises(RegistryRefusedError, match="reserved") as caught:
        MlflowRegistry(tracking_uri).set_alias(unique_model_name, "latest", "1")
    assert isinstance(caught.value, PermanentError)


def test_alias_maps_pages_one_call_per_page(
    tracking_uri: str,
    unique_model_name: str,
    make_versions: MakeVersions,
    mlflow_client: MlflowClient,
) -> None:
    names = [f"{unique_model_name}-{i}" for i in range(3)]
    make_versions(names[0], 2)
    make_versions(names[1], 1)
    mlflow_client.create_registered_model(names[2])
    mlflow_client.set_registered_model_alias(names[0], "champion", "1")
    mlflow_client.set_registered_model_alias(names[0], "challenger", "2")
    mlflow_client.set_registered_model_alias(names[1], "champion", "1")

    registry = MlflowRegistry(tracking_uri, page_size=2)
    maps = registry.alias_maps()

    assert maps[names[0]] == {"champion": "1", "challenger": "2"}
    assert maps[names[1]] == {"champion": "1"}
    assert maps[names[2]] == {}
    # The server is shared by the session: count pages over everything it holds.
    assert registry.search_calls == max(1, math.ceil(len(maps) / 2))

    full = MlflowRegistry(tracking_uri)
    assert full.alias_maps() == maps
    assert full.search_calls == 1


def test_moving_an_alias_shows_in_the_next_alias_map(
    tracking_uri: str, unique_model_name: str, make_versions: MakeVersions
) -> None:
    make_versions(unique_model_name, 2)
    registry = MlflowRegistry(tracking_uri)
    registry.set_alias(unique_model_name, "champion", "1")
    assert registry.alias_maps()[unique_model_name] == {"champion": "1"}
    registry.set_alias(unique_model_name, "champion", "2")
    assert registry.alias_maps()[unique_model_name] == {"champion": "2"}


def test_unreachable_server_fails_fast_as_temporary() -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}")
    for call in (registry.alias_maps, lambda: registry.resolve_alias("m", "champion")):
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError) as caught:
            call()
        elapsed = time.monotonic() - started
        assert elapsed < 5.0, f"took {elapsed:.1f}s to report an unreachable MLflow"
        assert caught.value.__cause__ is not None


def test_fast_failure_defaults_never_override_the_operator() -> None:
    environ = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9"}
    configure_fast_failure(environ)
    assert environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == FAST_FAIL_ENV["MLFLOW_HTTP_REQUEST_TIMEOUT"]


def test_page_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="page_size"):
        MlflowRegistry("http://127.0.0.1:1", page_size=1001)
