"""The dashboard's pages and the rollback endpoint over ASGI (no browser).

Auth rules of the pages (open, bearer, cookie, login form) and of the rollback endpoint,
its 409 cases, and that no secret value ever reaches a page.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from dashboard_harness import API_TOKEN, REPO, SECRET_VALUE, Stack
from fastapi.testclient import TestClient

from controller.api.dashboard import age, mlflow_link
from controller.core.records import Result, SyncRecord
from controller.service.rollback import previous_version

StackFactory = Callable[..., Stack]

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PAGES = (
    "/",
    "/fragments/overview",
    "/deployments/iris-prod",
    "/fragments/deployments/iris-prod",
    "/deployments/iris-pinned",
)


def _record(version: str, result: Result = Result.SUCCEEDED) -> SyncRecord:
    return SyncRecord("d", "poll", 0.0, result=result, model_version=version)


@pytest.mark.parametrize(
    ("served", "desired", "versions", "expected"),
    [
        ("2", "2", [("2", Result.SUCCEEDED), ("1", Result.SUCCEEDED)], "1"),
        ("3", "3", [("3", Result.SUCCEEDED), ("2", Result.FAILED), ("1", Result.SUCCEEDED)], "1"),
        ("1", "1", [("1", Result.SUCCEEDED), ("1", Result.SUCCEEDED)], None),
        (None, None, [], None),
        # A failed rollout: the alias points at 3, 2 still serves, so back to 2.
        ("2", "3", [("3", Result.FAILED), ("2", Result.SUCCEEDED)], "2"),
    ],
)
def test_previous_version(
    served: str | None,
    desired: str | None,
    versions: list[tuple[str, Result]],
    expected: str | None,
) -> None:
    history = [_record(version, result) for version, result in versions]
    assert previous_version(served, desired, history) == expected


def test_age_and_mlflow_links() -> None:
    assert age(100.0, now=112.4) == "12 s ago"
    assert age(0.0, now=600) == "10 min ago"
    assert age(None) == "never"
    assert mlflow_link(None, "iris", "2") is None
    assert mlflow_link("http://ui", "iris", "2", "abc") == "http://ui/#/models/iris/versions/2"
    assert mlflow_link("http://ui", "iris", "2", "abc", "7") == "http://ui/#/experiments/7/runs/abc"


# --- rollback endpoint -------------------------------------------------------------------


def test_rollback_needs_the_bearer_token(api: tuple[TestClient, Stack]) -> None:
    client, _stack = api
    url = "/api/deployments/iris-prod/rollback"
    assert client.post(url).status_code == 401
    assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post(url, headers={"Authorization": API_TOKEN}).status_code == 401


def test_rollback_is_disabled_without_a_configured_token(make_stack: StackFactory) -> None:
    stack = make_stack(api_token=None)
    with TestClient(stack.app) as client:
        response = client.post("/api/deployments/iris-prod/rollback", headers=AUTH)
    assert response.status_code == 403
    assert "ALIASFLOW_API_TOKEN" in response.json()["detail"]


def test_rollback_refusals(api: tuple[TestClient, Stack]) -> None:
    client, stack = api
    nothing = client.post("/api/deployments/iris-prod/rollback", headers=AUTH)
    assert nothing.status_code == 409
    assert "nothing to roll back to" in nothing.json()["detail"]
    pinned = client.post("/api/deployments/iris-pinned/rollback", headers=AUTH)
    assert pinned.status_code == 409
    assert "pins version 1" in pinned.json()["detail"]
    assert client.post("/api/deployments/nope/rollback", headers=AUTH).status_code == 404
    stack.move_alias("2")
    stack.settle()
    stack.registry.available = False
    down = client.post("/api/deployments/iris-prod/rollback", headers=AUTH)
    assert down.status_code == 503
    assert stack.registry.aliases["iris"]["champion"] == "2"


def test_rollback_moves_the_alias_back_and_reconciles(api: tuple[TestClient, Stack]) -> None:
    client, stack = api
    stack.move_alias("2")
    stack.settle()
    assert stack.runtime.workloads["iris-prod"].served_version == "2"
    response = client.post("/api/deployments/iris-prod/rollback", headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {
        "deployment": "iris-prod",
        "model_name": "iris",
        "alias": "champion",
        "from_version": "2",
        "to_version": "1",
    }
    assert stack.registry.aliases["iris"]["champion"] == "1"
    stack.settle()
    assert stack.runtime.workloads["iris-prod"].served_version == "1"
    newest = client.get("/api/deployments/iris-prod/history").json()[0]
    assert (newest["trigger"], newest["model_version"], newest["result"]) == (
        "rollback",
        "1",
        "Succeeded",
    )
    # Rolling back again goes to the version served before that, i.e. forward to 2.
    again = client.post("/api/deployments/iris-prod/rollback", headers=AUTH)
    assert again.json()["to_version"] == "2"


# --- pages -------------------------------------------------------------------------------


def test_pages_render_status_history_and_manifest(api: tuple[TestClient, Stack]) -> None:
    client, stack = api
    stack.move_alias("2")
    stack.settle()
    overview = client.get("/")
    assert overview.status_code == 200
    assert overview.headers["cache-control"] == "no-store"
    html = overview.text
    for expected in ("iris-prod", "iris-pinned", "Synced", "Healthy", "@champion", "pinned v1"):
        assert expected in html
    assert 'data-served="2"' in html
    assert "Controller" in html
    assert "reachable" in html
    detail = client.get("/deployments/iris-prod").text
    assert "Manifest as applied" in detail
    assert "fromEnv: ALIASFLOW_DASHBOARD_TEST_SECRET" in detail
    assert 'data-trigger="poll"' in detail
    assert "4f2c9e1d" in detail  # manifest commit
    assert "Roll back to</dt><dd>v1" in detail
    pinned = client.get("/deployments/iris-pinned").text
    assert "pinned: change the manifest" in pinned
    missing = client.get("/deployments/nope")
    assert missing.status_code == 404
    assert "No deployment named" in missing.text
    assert client.get("/fragments/deployments/nope").status_code == 404


def test_history_links_to_the_mlflow_ui(make_stack: StackFactory) -> None:
    stack = make_stack(mlflow_ui_url="http://mlflow.example:5000/")
    with TestClient(stack.app) as client:
        stack.wait_deployed()
        html = client.get("/deployments/iris-prod").text
    assert 'href="http://mlflow.example:5000/#/models/iris/versions/1"' in html
    assert "run-iris-1" in html


def test_controller_panel_counts_webhook_rejections(api: tuple[TestClient, Stack]) -> None:
    client, _stack = api
    headers = {
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": str(int(time.time())),
        "X-MLflow-Signature": "v1,AAAA",
    }
    assert client.post("/webhooks/mlflow", content=b"{}", headers=headers).status_code == 401
    html = client.get("/fragments/overview").text
    assert 'class="error">1 rejected</span>' in html
    assert "bad_signature 1" in html


def test_secret_values_never_reach_a_page(api: tuple[TestClient, Stack]) -> None:
    client, stack = api
    stack.move_alias("2")
    stack.settle()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert SECRET_VALUE not in response.text, path
        assert API_TOKEN not in response.text, path
        assert stack.controller.admin_token not in response.text, path


def test_static_files_are_a_fixed_list(api: tuple[TestClient, Stack]) -> None:
    client, _stack = api
    css = client.get("/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/static/..%2Fdashboard.py").status_code == 404
    assert client.get("/static/other.js").status_code == 404


def test_login_page_is_not_used_when_pages_are_open(api: tuple[TestClient, Stack]) -> None:
    client, _stack = api
    response = client.get("/login", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_dashboard_auth_accepts_bearer_or_login_cookie(make_stack: StackFactory) -> None:
    stack = make_stack(dashboard_auth=True)
    with TestClient(stack.app) as client:
        stack.wait_deployed()
        for path in PAGES[:4]:
            response = client.get(path, follow_redirects=False)
            if path.startswith("/fragments"):
                assert response.status_code == 401, path
            else:
                assert response.status_code == 303, path
                assert response.headers["location"] == f"/login?next={path}"
        assert client.get("/", headers=AUTH).status_code == 200
        wrong_bearer = client.get(
            "/", headers={"Authorization": "Bearer nope"}, follow_redirects=False
        )
        assert wrong_bearer.status_code == 303
        # Static assets hold no data and stay open so the login page has its style.
        assert client.get("/static/dashboard.css").status_code == 200

        form = client.get("/login?next=/deployments/iris-prod")
        assert form.status_code == 200
        assert 'name="token"' in form.text
        wrong = client.post("/login", data={"token": "nope", "next": "/"})
        assert wrong.status_code == 401
        assert "That token does not match" in wrong.text
        assert "aliasflow_token" not in client.cookies
        ok = client.post(
            "/login",
            data={"token": API_TOKEN, "next": "/deployments/iris-prod"},
            follow_redirects=False,
        )
        assert (ok.status_code, ok.headers["location"]) == (303, "/deployments/iris-prod")
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        page = client.get("/deployments/iris-prod")
        assert page.status_code == 200
        assert "Log out" in page.text
        assert API_TOKEN not in page.text
        assert client.get("/fragments/overview").status_code == 200
        # The cookie never authorises a state change: actions still need the bearer.
        assert client.post("/api/deployments/iris-prod/sync").status_code == 401
        assert client.post("/api/deployments/iris-prod/rollback").status_code == 401
        client.post("/logout")
        assert client.get("/", follow_redirects=False).status_code == 303


def test_login_never_redirects_off_site(make_stack: StackFactory) -> None:
    stack = make_stack(dashboard_auth=True)
    with TestClient(stack.app) as client:
        for target in ("//evil.example/", "https://evil.example/", "evil"):
            response = client.post(
                "/login", data={"token": API_TOKEN, "next": target}, follow_redirects=False
            )
            assert response.headers["location"] == "/", target


def test_dashboard_auth_without_a_token_is_refused_not_open(make_stack: StackFactory) -> None:
    stack = make_stack(dashboard_auth=True, api_token=None)
    with TestClient(stack.app) as client:
        response = client.get("/")
        assert response.status_code == 403
        assert "ALIASFLOW_API_TOKEN is not set" in response.json()["detail"]
        login = client.post("/login", data={"token": "anything"})
        assert login.status_code == 401


def test_alert_rules_match_the_exported_metrics(api: tuple[TestClient, Stack]) -> None:
    """docs/alerts.md names metrics and labels that /metrics really exports."""
    client, stack = api
    stack.runtime.rejected_versions.add("3")
    stack.move_alias("3")
    stack.settle()
    headers = {
        "X-MLflow-Delivery-Id": "d-2",
        "X-MLflow-Timestamp": str(int(time.time())),
        "X-MLflow-Signature": "v1,AAAA",
    }
    client.post("/webhooks/mlflow", content=b"{}", headers=headers)
    metrics = client.get("/metrics").text
    assert 'aliasflow_deployment_health{deployment="iris-prod",health="Degraded"} 1.0' in metrics
    assert 'aliasflow_webhook_deliveries_total{outcome="bad_signature",source="mlflow"} 1.0' in (
        metrics
    )
    docs = (REPO / "docs" / "alerts.md").read_text()
    assert 'aliasflow_deployment_health{health="Degraded"} == 1' in docs
    assert "increase(aliasflow_webhook_deliveries_total{outcome=~" in docs
    assert "bad_signature" in docs
    # And the dashboard says so too.
    assert 'data-health="Degraded"' in client.get("/fragments/overview").text
