"""Fixtures of the dashboard tests; the pieces they build on live in dashboard_harness."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    SECRET_VALUE,
    LiveServer,
    Stack,
    build_stack,
)
from fastapi.testclient import TestClient

StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackFactory:
    monkeypatch.setenv("ALIASFLOW_DASHBOARD_TEST_SECRET", SECRET_VALUE)

    def build(*, pinned: bool = False, **overrides: Any) -> Stack:
        return build_stack(tmp_path, pinned=pinned, **overrides)

    return build


@pytest.fixture
def api(make_stack: StackFactory) -> Iterator[tuple[TestClient, Stack]]:
    stack = make_stack(pinned=True)
    with TestClient(stack.app) as client:
        stack.wait_deployed()
        yield client, stack


@pytest.fixture
def serve() -> Iterator[Callable[[Stack], LiveServer]]:
    started: list[LiveServer] = []

    def start(stack: Stack) -> LiveServer:
        live = LiveServer(stack.app).__enter__()
        started.append(live)
        stack.wait_deployed()
        return live

    yield start
    for live in started:
        live.__exit__(None, None, None)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed by scripts/ensure_chromium.sh when missing."""
    if not CHROMIUM.exists():
        script = REPO / "scripts" / "ensure_chromium.sh"
        result = subprocess.run(
            ["sh", str(script)], capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode != 0 or not CHROMIUM.exists():
            pytest.skip(
                f"Chromium is not installed and {script.name} could not install it: "
                f"{(result.stderr or result.stdout).strip()[-400:]}"
            )
    return CHROMIUM


# Module scope, not session: Playwright's sync API keeps an event loop running on the
# main thread while it is open, and every later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
