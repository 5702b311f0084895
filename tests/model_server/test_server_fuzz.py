"""Random JSON bodies never make `/predict` answer 5xx (or crash the app)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.fixtures_models import COLUMNS

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from([*COLUMNS, "x"]) | st.text(max_size=5), children, max_size=5
        )
    ),
    max_leaves=30,
)
# The app is module-scoped and stateless per request, so reusing it across examples is fine.
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]
_bodies = _json | st.fixed_dictionaries(
    {},
    optional={
        "instances": _json,
        "records": _json,
        "inputs": _json,
        "dataframe_split": st.fixed_dictionaries(
            {}, optional={"columns": _json, "data": _json, "index": _json}
        ),
        "dataframe_records": _json,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_bodies)
def test_random_json_never_yields_a_5xx(v1_client: TestClient, body: object) -> None:
    response = v1_client.post("/predict", json=body)
    assert response.status_code < 500, (body, response.text)
    assert "detail" in response.json() or "predictions" in response.json()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_yield_a_5xx(v1_client: TestClient, raw: bytes) -> None:
    response = v1_client.post("/predict", content=raw)
    assert response.status_code < 500, (raw, response.text)
