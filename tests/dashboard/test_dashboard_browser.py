"""The dashboard in a real browser: Debian's Chromium through Playwright, a real uvicorn.

What an on-call person does: watch a deployment go Progressing -> Healthy after an alias
move without reloading, open its history, sync it (with a wrong token first, then the
right one), and roll it back. Screenshots land in test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dashboard_harness import API_TOKEN, SECRET_VALUE, LiveServer, Stack, shot
from playwright.sync_api import expect

StackFactory = Callable[..., Stack]
Serve = Callable[[Stack], LiveServer]


def _row(page: Any, name: str = "iris-prod") -> Any:
    return page.locator(f'tr[data-deployment="{name}"]')


def _mark_document(page: Any) -> None:
    """A marker that a full reload or navigation would wipe out."""
    page.evaluate("window.__noReload = true")


def _assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def _enter_token(page: Any, token: str) -> None:
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", token)
    page.click("#token-ok")
    expect(dialog).to_be_hidden()


def test_alias_move_shows_progressing_then_healthy_without_reload(
    make_stack: StackFactory, serve: Serve, page: Any
) -> None:
    stack = make_stack(pinned=True)
    live = serve(stack)
    page.goto(live.url + "/")
    row = _row(page)
    expect(row).to_have_attribute("data-health", "Healthy")
    expect(row.locator(".served")).to_have_text("v1")
    expect(page.locator("#live-state")).to_have_text("Live")
    shot(page, "overview-desktop-healthy")
    _mark_document(page)

    stack.runtime.delay = 3.0  # the new version takes a while to load
    stack.move_alias("2")
    expect(row).to_have_attribute("data-health", "Progressing", timeout=5_000)
    expect(row.locator(".badge", has_text="Progressing")).to_be_visible()
    expect(row).to_have_attribute("data-sync", "OutOfSync")
    shot(page, "overview-desktop-progressing")
    expect(row).to_have_attribute("data-health", "Healthy", timeout=10_000)
    expect(row).to_have_attribute("data-sync", "Synced")
    expect(row.locator(".served")).to_have_text("v2")
    expect(row).to_contain_text(re.compile(r"poll · hotswap · \d+ s ago"))
    _assert_not_reloaded(page)
    assert SECRET_VALUE not in page.content()
    shot(page, "overview-desktop-after-move")


def test_history_and_sync_now_with_wrong_then_right_token(
    make_stack: StackFactory, serve: Serve, page: Any
) -> None:
    stack = make_stack(mlflow_ui_url="http://127.0.0.1:5000")
    live = serve(stack)
    page.goto(live.url + "/")
    page.get_by_role("link", name="iris-prod").click()
    expect(page).to_have_url(live.url + "/deployments/iris-prod")
    history = page.locator("table.history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_have_attribute("data-trigger", "poll")
    version = history.first.get_by_role("link", name="v1")
    expect(version).to_have_attribute("href", "http://127.0.0.1:5000/#/models/iris/versions/1")
    expect(page.locator("pre.yaml")).to_contain_text("fromEnv: ALIASFLOW_DASHBOARD_TEST_SECRET")
    _mark_document(page)

    sync = page.get_by_role("button", name="Sync now")
    sync.click()
    _enter_token(page, "not-the-token")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Refused (401)")
    expect(notice).to_contain_text("missing or invalid bearer token")
    expect(notice).to_have_class(re.compile(r"\bbad\b"))
    shot(page, "deployment-desktop-refused")
    assert page.evaluate("sessionStorage.getItem('aliasflow.apiToken')") is None

    sync.click()  # a refused token is forgotten, so the page asks again
    _enter_token(page, API_TOKEN)
    expect(notice).to_contain_text("Sync of iris-prod accepted")
    stack.settle()
    # In sync already: a sync that changes nothing adds no history row.
    expect(history).to_have_count(1)
    sync.click()  # the token is remembered for this tab: no dialog the second time
    expect(page.locator("#token-dialog")).to_be_hidden()
    expect(notice).to_contain_text("Sync of iris-prod accepted")
    stack.settle()
    expect(page.locator('table.history tr[data-trigger="manual"]')).to_have_count(0)
    _assert_not_reloaded(page)
    assert API_TOKEN not in page.content()
    shot(page, "deployment-desktop-synced")


def test_actions_refused_when_the_controller_has_no_token(
    make_stack: StackFactory, serve: Serve, page: Any
) -> None:
    stack = make_stack(api_token=None)
    live = serve(stack)
    page.goto(live.url + "/deployments/iris-prod")
    page.get_by_role("button", name="Sync now").click()
    _enter_token(page, "anything")
    expect(page.locator("#notice")).to_contain_text("Refused (403)")
    expect(page.locator("#notice")).to_contain_text("set ALIASFLOW_API_TOKEN")
    expect(page.locator('table.history tr[data-trigger="manual"]')).to_have_count(0)


def test_roll_back_returns_to_the_previous_version(
    make_stack: StackFactory, serve: Serve, page: Any
) -> None:
    stack = make_stack()
    live = serve(stack)
    stack.move_alias("2")
    stack.settle()
    page.goto(live.url + "/deployments/iris-prod")
    summary = page.locator("section.summary")
    expect(summary).to_have_attribute("data-served", "2")
    _mark_document(page)

    stack.runtime.delay = 1.5
    page.get_by_role("button", name="Roll back").click()
    expect(page.locator("#confirm-text")).to_contain_text("from version 2 back to version 1")
    page.click("#confirm-ok")
    _enter_token(page, API_TOKEN)
    expect(page.locator("#notice")).to_contain_text("moved from version 2 to 1")
    expect(summary).to_have_attribute("data-served", "1", timeout=10_000)
    expect(summary).to_have_attribute("data-health", "Healthy")
    expect(page.locator('table.history tr[data-trigger="rollback"]')).to_have_count(1)
    assert stack.registry.aliases["iris"]["champion"] == "1"
    _assert_not_reloaded(page)
    shot(page, "deployment-desktop-rolled-back")


def test_phone_layout_and_login(make_stack: StackFactory, serve: Serve, phone: Any) -> None:
    stack = make_stack(pinned=True, dashboard_auth=True)
    live = serve(stack)
    stack.move_alias("2")
    stack.settle()
    phone.goto(live.url + "/")
    expect(phone).to_have_url(re.compile(r"/login\?next=/$"))
    phone.fill("#login-token", "wrong")
    phone.get_by_role("button", name="Log in").click()
    expect(phone.get_by_role("alert")).to_contain_text("does not match")
    phone.fill("#login-token", API_TOKEN)
    phone.get_by_role("button", name="Log in").click()
    expect(phone).to_have_url(live.url + "/")
    row = _row(phone)
    expect(row).to_have_attribute("data-health", "Healthy")
    # Cards, not a table: every cell carries its own label and nothing scrolls sideways.
    assert row.evaluate("el => getComputedStyle(el).display") == "block"
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "overview-phone")
    row.get_by_role("link", name="iris-prod").click()
    expect(phone.locator("table.history tbody tr")).to_have_count(2)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "deployment-phone")
