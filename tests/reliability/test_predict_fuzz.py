"""Schemathesis against a real `aliasflow serve` process: never a 5xx, never a crash.

Every operation of the server's own OpenAPI schema (all three protocols) gets generated
requests (valid and invalid against the schema); the answers must be documented status
codes with the documented content type and body shape. Clients code against that schema, so an
undocumented status or a body that does not match it breaks them as surely as a 500.
The admin endpoint is called without a token here (its 401 path); swaps are tested in
tests/model_server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controller.runtimes.netutil import stop_process
from tests.fixtures_models import IrisModels
from tests.model_server.conftest import ServerProcess, start_v1

MAX_EXAMPLES = 40
OPERATIONS = [
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/health"),
    ("POST", "/predict"),
    ("GET", "/metadata"),
    ("GET", "/metrics"),
    ("POST", "/admin/model"),
    ("PUT", "/admin/api-keys"),
    ("PUT", "/admin/traffic"),
    ("GET", "/admin/traffic"),
    ("DELETE", "/admin/model/previous"),
    # MLflow's scoring protocol
    ("GET", "/ping"),
    ("GET", "/version"),
    ("POST", "/invocations"),
    # Open Inference Protocol V2 (model names are generated: mostly 404s, never a 5xx)
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
]
# `mlflow models serve` answers "\n" and "3.17.2" labelled application/json on these two;
# MLflow's clients rely on exactly that, so only status and liveness are checked there.
NOT_JSON = frozenset({"/ping", "/version"})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NOT_JSON_CHECKS = [not_a_server_error, status_code_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(
    iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_v1(
        iris_models,
        tmp_path_factory.mktemp("fuzz") / "server.log",
        ALIASFLOW_MAX_BODY_BYTES="20000",
    )
    try:
        yield server
    finally:
        alive = server.process.poll() is None
        stop_process(server.process)
        assert alive, f"the server died under fuzzing:\n{server.output()[-3000:]}"


@pytest.fixture(scope="module")
def server_schema(fuzzed_server: ServerProcess) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


def test_the_schema_lists_every_operation(server_schema: BaseSchema) -> None:
    operations = {(o.ok().method.upper(), o.ok().path) for o in server_schema.get_all_operations()}
    assert operations == set(OPERATIONS)


CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    # Negative cases need something to break; the GETs take no parameters at all.
    for mode in (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if method == "POST"
        else [GenerationMode.POSITIVE]
    )
]


# `schema.parametrize()` with `schemathesis.pytest.from_fixture` fails on pytest 9
# ("'Function' object has no attribute '_nodeid'"), so each operation's strategy is
# driven by Hypothesis directly: the same generated cases and the same checks.
@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES]
)
def test_every_operation_answers_as_documented(
    server_schema: BaseSchema,
    fuzzed_server: ServerProcess,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = server_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Case) -> None:
        case.call_and_validate(checks=checks, timeout=10)

    checks = CHECKS if path not in NOT_JSON else [c for c in CHECKS if c in NOT_JSON_CHECKS]

    run()
    assert fuzzed_server.process.poll() is None, fuzzed_server.output()[-3000:]


def test_the_server_log_has_no_unexpected_error(fuzzed_server: ServerProcess) -> None:
    """Runs after the fuzzing (same module): a handled 500 would still log a traceback."""
    log = Path(fuzzed_server.log).read_text(errors="replace")
    assert "unexpected error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
