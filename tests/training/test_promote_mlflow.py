"""`aliasflow promote` against the real MLflow server (versions made directly, no training)."""

from __future__ import annotations

import json

import pytest
from helpers_training import aliasflow

from training.promote import run_promote


@pytest.fixture
def registry(tracking_uri: str, unique_model_name: str):  # type: ignore[no-untyped-def]
    """A model with v1 (accuracy 0.90), v2 (0.95), v3 (0.80); v2 is the challenger."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.create_registered_model(unique_model_name)
    for accuracy in (0.90, 0.95, 0.80):
        run = client.create_run("0")
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        client.log_metric(run.info.run_id, "log_loss", 1 - accuracy)
        client.set_terminated(run.info.run_id)
        client.create_model_version(
            unique_model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
    client.set_registered_model_alias(unique_model_name, "challenger", "2")
    return client


def _promote(capsys: pytest.CaptureFixture[str], uri: str, model: str, **kwargs: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"to": "champion", "version": None, "from_alias": None}
    args.update(kwargs)
    args.setdefault("requirements", [])
    capsys.readouterr()
    code = run_promote(model, tracking_uri=uri, **args)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def _champion(client, model: str) -> str | None:  # type: ignore[no-untyped-def]
    return client.get_registered_model(model).aliases.get("champion")


def test_promote_by_version_then_from_alias_with_a_passing_gate(
    registry, tracking_uri: str, unique_model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = _promote(capsys, tracking_uri, unique_model_name, version=1)
    assert code == 0
    assert result["promoted"]
    assert result["changed"]
    assert result["previous_version"] is None
    assert _champion(registry, unique_model_name) == "1"

    code, result, err = _promote(
        capsys,
        tracking_uri,
        unique_model_name,
        from_alias="challenger",
        requirements=["accuracy>=champion", "log_loss<=0.1"],
    )
    assert code == 0, err
    assert (result["version"], result["previous_version"]) == (2, 1)
    assert [check["passed"] for check in result["checks"]] == [True, True]
    assert _champion(registry, unique_model_name) == "2"

    # Idempotent: promoting the holder again changes nothing.
    code, result, _ = _promote(capsys, tracking_uri, unique_model_name, version=2)
    assert code == 0
    assert result["changed"] is False


def test_gate_refuses_a_worse_version_and_leaves_the_alias(
    registry, tracking_uri: str, unique_model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.set_registered_model_alias(unique_model_name, "champion", "2")
    code, result, err = _promote(
        capsys, tracking_uri, unique_model_name, version=3, requirements=["accuracy>=champion"]
    )
    assert code == 1
    assert result["promoted"] is False
    assert "accuracy: candidate v3 0.8000 < champion v2 0.9500" in err
    assert _champion(registry, unique_model_name) == "2"


def test_first_promotion_passes_a_champion_gate(
    registry, tracking_uri: str, unique_model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = _promote(
        capsys, tracking_uri, unique_model_name, version=3, requirements=["accuracy>=champion"]
    )
    assert code == 0
    assert "no version holds 'champion'" in result["checks"][0]["message"]


MISSING = [
    ("-absent", {"version": 1}, "registered model '{model}-absent' not found"),
    ("", {"version": 9}, "version 9 of model '{model}' not found"),
    ("", {"from_alias": "staging"}, "has no alias 'staging' (aliases: challenger)"),
    ("", {"version": 1, "to": "latest"}, "alias 'latest' is reserved"),
]


def test_missing_model_version_or_alias_exits_2(
    registry, tracking_uri: str, unique_model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # One registry for every case: creating versions is the slow part of these tests.
    for model_suffix, kwargs, message in MISSING:
        code, result, err = _promote(
            capsys, tracking_uri, unique_model_name + model_suffix, **kwargs
        )
        assert code == 2, (kwargs, err)
        assert result is None
        assert message.format(model=unique_model_name) in err


def test_real_command_moves_the_alias_and_prints_one_json_line(
    registry, tracking_uri: str, unique_model_name: str
) -> None:
    done = aliasflow(
        "promote", unique_model_name, "--to", "champion", "--from", "challenger",
        "--require", "accuracy>=0.9", "--tracking-uri", tracking_uri,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["version"] == 2
    assert _champion(registry, unique_model_name) == "2"


def test_unquarantine_clears_the_controllers_tag(
    registry, tracking_uri: str, unique_model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.promote import QUARANTINE_TAG, run_unquarantine

    registry.set_model_version_tag(unique_model_name, "3", QUARANTINE_TAG, "p99 900 ms > 250 ms")
    assert run_unquarantine(unique_model_name, 3, tracking_uri) == 0
    assert "it was: p99 900 ms > 250 ms" in capsys.readouterr().err
    assert QUARANTINE_TAG not in registry.get_model_version(unique_model_name, "3").tags
    assert run_unquarantine(unique_model_name, 3, tracking_uri) == 0
    assert "not quarantined" in capsys.readouterr().err
    assert run_unquarantine(unique_model_name, 99, tracking_uri) == 2
    assert "version 99 not found" in capsys.readouterr().err
