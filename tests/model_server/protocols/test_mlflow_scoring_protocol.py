"""`/invocations`, `/ping` and `/version` answer what `mlflow models serve` answers.

Differential: the same model version behind both servers (`served_pair`), the same bodies
(every input format, MLflow's own serving input example, CSV, params, and the bad inputs
MLflow refuses), compared status for status and answer for answer. Then MLflow's own
client, `ScoringServerClient`, against both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.model_server.protocols.conftest import ServedPair
from tests.model_server.protocols.models import ProtocolModels, example_frame

JSON = "application/json"


def _bodies() -> list[tuple[str, str, bytes]]:
    """(id, content type, body): every shape MLflow reads, and what it refuses."""
    frame = example_frame("cancer_proba", rows=3)
    columns = list(frame.columns)
    rows = frame.to_numpy().tolist()
    records = frame.to_dict(orient="records")
    ints = [[round(v) for v in row] for row in rows]
    zeros_ones = [[float(i % 2) for i in range(len(columns))]]
    one_int_column = [[*row[:-1], 7] for row in rows]
    split = {"columns": columns, "data": rows}

    def j(value: Any) -> bytes:
        return json.dumps(value).encode()

    cases: list[tuple[str, str, bytes]] = [
        ("dataframe_split", JSON, j({"dataframe_split": split})),
        (
            "dataframe_split-reordered",
            JSON,
            j({"dataframe_split": {"columns": columns[::-1], "data": [r[::-1] for r in rows]}}),
        ),
        ("dataframe_split-index", JSON, j({"dataframe_split": {**split, "index": [7, 8, 9]}})),
        ("dataframe_split-no-columns", JSON, j({"dataframe_split": {"data": rows}})),
        ("dataframe_records", JSON, j({"dataframe_records": records})),
        ("instances-rows", JSON, j({"instances": rows})),
        ("instances-records", JSON, j({"instances": records})),
        ("inputs-rows", JSON, j({"inputs": rows})),
        ("inputs-columns", JSON, j({"inputs": {c: list(frame[c]) for c in columns}})),
        ("charset", f"{JSON}; charset=utf-8", j({"dataframe_split": split})),
        ("params-ignored", JSON, j({"dataframe_split": split, "params": {"x": 1}})),
        ("unknown-key-ignored", JSON, j({"dataframe_split": split, "extra": 1})),
        ("integers", JSON, j({"instances": ints})),
        ("integers-split", JSON, j({"dataframe_split": {"columns": columns, "data": ints}})),
        ("zeros-and-ones", JSON, j({"instances": [[int(v) for v in zeros_ones[0]]]})),
        ("mixed-int-float", JSON, j({"instances": [ints[0], rows[1]]})),
        (
            "one-int-column",
            JSON,
            j({"dataframe_split": {"columns": columns, "data": one_int_column}}),
        ),
        ("extra-column", JSON, j({"dataframe_records": [{**records[0], "colour": 1.0}]})),
        ("missing-column", JSON, j({"dataframe_records": [dict(list(records[0].items())[1:])]})),
        ("string-value", JSON, j({"dataframe_records": [{**records[0], columns[0]: "x"}]})),
        ("null-value", JSON, j({"dataframe_records": [{**records[0], columns[0]: None}]})),
        ("bool-value", JSON, j({"dataframe_records": [{**records[0], columns[0]: True}]})),
        ("wrong-width", JSON, j({"instances": [rows[0][:-1]]})),
        ("empty-rows", JSON, j({"instances": []})),
        ("two-formats", JSON, j({"instances": rows, "inputs": rows})),
        ("no-format", JSON, j({"rows": rows})),
        ("top-level-list", JSON, j(rows)),
        ("malformed", JSON, b"{not json"),
        ("empty-body", JSON, b""),
        ("nan-literal", JSON, j({"instances": [rows[0]]}).replace(b"[[", b"[[NaN, ", 1)),
        ("csv", "text/csv", frame.to_csv(index=False).encode()),
        ("csv-garbage", "text/csv", b"a,b\n1,2,3,4\n"),
        ("text-plain", "text/plain", j({"instances": rows})),
        ("latin-1", f"{JSON}; charset=latin-1", j({"instances": rows})),
        ("content-type-parameter", f"{JSON}; format=pandas-split", j({"instances": rows})),
    ]
    return cases


BODIES = _bodies()


@pytest.mark.parametrize(
    ("content_type", "body"), [c[1:] for c in BODIES], ids=[c[0] for c in BODIES]
)
def test_invocations_answer_as_mlflow_models_serve(
    served_pair: ServedPair, content_type: str, body: bytes
) -> None:
    headers = {"content-type": content_type}
    theirs = httpx.post(f"{served_pair.mlflow_url}/invocations", content=body, headers=headers)
    ours = httpx.post(f"{served_pair.ours.url}/invocations", content=body, headers=headers)
    assert ours.status_code == theirs.status_code, (ours.text, theirs.text)
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    if theirs.status_code == 200:
        assert ours.json() == theirs.json()
    elif theirs.headers["content-type"] == JSON:
        assert ours.json()["error_code"] == theirs.json()["error_code"], (ours.text, theirs.text)
        assert "stack_trace" not in ours.json()  # our one deliberate difference
    else:
        assert ours.text == theirs.text


# Bodies our own path answers (MLflow would read them as the same float64 frame); all
# others go to MLflow's handler. A regression here is a slow /invocations, not a wrong one.
FAST = {
    "dataframe_split",
    "dataframe_split-reordered",
    "dataframe_split-index",
    "dataframe_records",
    "instances-records",
    "inputs-columns",
    "charset",
    "params-ignored",
    "unknown-key-ignored",
}


@pytest.mark.parametrize(("case", "content_type", "body"), BODIES, ids=[c[0] for c in BODIES])
def test_common_bodies_take_the_shared_fast_path(
    served_pair: ServedPair, case: str, content_type: str, body: bytes
) -> None:
    def by_mlflow() -> float:
        text = httpx.get(f"{served_pair.ours.url}/metrics").text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith("aliasflow_server_invocations_by_mlflow_total")
        )
        return float(line.split()[-1])

    before = by_mlflow()
    httpx.post(
        f"{served_pair.ours.url}/invocations", content=body, headers={"content-type": content_type}
    )
    assert by_mlflow() - before == (0 if case in FAST else 1)


def test_mlflows_serving_input_example_gives_the_same_answer(
    served_pair: ServedPair, protocol_models: ProtocolModels, tmp_path: Path
) -> None:
    """MLflow writes `serving_input_example.json` beside every model logged with an input
    example: the body its docs tell users to send."""
    import mlflow.artifacts

    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=protocol_models.uri(served_pair.kind),
            dst_path=str(tmp_path),
            tracking_uri=protocol_models.tracking_uri,
        )
    )
    body = (local / "serving_input_example.json").read_bytes()
    answers = [
        httpx.post(f"{url}/invocations", content=body, headers={"content-type": JSON})
        for url in (served_pair.mlflow_url, served_pair.ours.url)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()


def test_mlflows_own_client_reads_both_servers_alike(served_pair: ServedPair) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = example_frame(served_pair.kind, rows=4)
    answers = []
    for url in (served_pair.mlflow_url, served_pair.ours.url):
        port = int(url.rsplit(":", 1)[1])
        client = ScoringServerClient("127.0.0.1", port)
        client.wait_server_ready(timeout=10)
        assert client.get_version() == httpx.get(f"{served_pair.mlflow_url}/version").text
        answers.append(client.invoke(frame).get_predictions())
    assert answers[0].equals(answers[1]), (answers[0], answers[1])


def test_ping_and_version(served_pair: ServedPair) -> None:
    for path in ("/ping", "/version"):
        theirs = httpx.get(f"{served_pair.mlflow_url}{path}")
        ours = httpx.get(f"{served_pair.ours.url}{path}")
        assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text)
        assert ours.headers["content-type"] == theirs.headers["content-type"]


def test_a_request_without_content_type_is_a_415_not_mlflows_500(
    served_pair: ServedPair,
) -> None:
    body = json.dumps({"instances": [[1.0] * 30]}).encode()
    theirs = httpx.post(f"{served_pair.mlflow_url}/invocations", content=body)
    ours = httpx.post(f"{served_pair.ours.url}/invocations", content=body)
    assert theirs.status_code == 500  # MLflow splits a missing header: AttributeError
    assert ours.status_code == 415
    assert ours.json()["error_code"] == "BAD_REQUEST"
