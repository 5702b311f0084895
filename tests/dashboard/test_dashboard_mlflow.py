"""The dashboard against a real `mlflow server`: alias moves and a rollback for real.

The registry is the real one here (MlflowRegistry over HTTP, the poller as the trigger),
so "Roll back" really moves the alias in MLflow. The runtime stays in memory: a real
model server costs ~11 s of cold start and is covered by the e2e tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dashboard_harness import API_TOKEN, LiveServer, Stack, shot
from mlflow import MlflowClient
from playwright.sync_api import expect

from controller.registry.mlflow_registry import FAST_FAIL_ENV

StackFactory = Callable[..., Stack]
Serve = Callable[[Stack], LiveServer]


def test_real_mlflow_alias_move_and_rollback(
    make_stack: StackFactory,
    serve: Serve,
    page: Any,
    tracking_uri: str,
    unique_model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in FAST_FAIL_ENV.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(unique_model_name)
    run = client.create_run(client.create_experiment(f"exp-{unique_model_name}"))
    for index in range(2):
        client.create_model_version(
            unique_model_name,
            source=f"{run.info.artifact_uri}/model-{index}",
            run_id=run.info.run_id,
            await_creation_for=0,
        )
    client.set_registered_model_alias(unique_model_name, "champion", "1")

    stack = make_stack(
        mlflow_model=unique_model_name,
        mlflow_tracking_uri=tracking_uri,
        mlflow_ui_url=tracking_uri,
        poll_interval_seconds=1.0,
    )
    live = serve(stack)
    page.goto(live.url + "/")
    expect(page.locator("section.controller")).to_contain_text("reachable")
    page.get_by_role("link", name="iris-prod").click()
    summary = page.locator("section.summary")
    expect(summary).to_have_attribute("data-served", "1")

    stack.runtime.delay = 2.0
    client.set_registered_model_alias(unique_model_name, "champion", "2")
    expect(summary).to_have_attribute("data-health", "Progressing", timeout=5_000)
    expect(summary).to_have_attribute("data-served", "2", timeout=10_000)
    expect(summary).to_have_attribute("data-health", "Healthy")

    page.get_by_role("button", name="Roll back").click()
    page.click("#confirm-ok")
    page.fill("#token-input", API_TOKEN)
    page.click("#token-ok")
    expect(page.locator("#notice")).to_contain_text("moved from version 2 to 1")
    expect(summary).to_have_attribute("data-served", "1", timeout=10_000)
    assert client.get_model_version_by_alias(unique_model_name, "champion").version == "1"
    link = page.locator('table.history tr[data-trigger="rollback"] a').first
    expect(link).to_have_attribute(
        "href", f"{tracking_uri}/#/models/{unique_model_name}/versions/1"
    )
    shot(page, "deployment-desktop-real-mlflow")
