"""The dashboard: server-rendered HTML over the same data as the JSON API.

Why server-rendered: the controller already knows how to describe a deployment, so the
page is Jinja templates plus one small script, with no build step and nothing fetched
from a CDN. The script keeps the page live by re-fetching a *fragment* of the page (the
same template, rendered alone) every two seconds and swapping it in only when it
changed, so there is one renderer, not a second one in JavaScript.

Auth: with `ALIASFLOW_DASHBOARD_AUTH=true` the pages need the API token too, either as
`Authorization: Bearer <token>` (scripts, curl) or as the `aliasflow_token` cookie that
the `/login` form sets (HttpOnly, SameSite=Strict; a browser session cookie). Actions
(sync, roll back) always go through the JSON API with a bearer token the page asks for
once and keeps in `sessionStorage`; the cookie never authorises a state change, so a
forged cross-site request cannot trigger one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import yaml
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from controller.api.auth import COOKIE, bearer, token_matches
from controller.api.deps import ControllerDep
from controller.api.detail import detail_of
from controller.api.schemas import DeploymentOut, deployment_out
from controller.core.records import SyncRecord
from controller.service.controller import Controller
from controller.service.errors import NotFoundError
from controller.service.rollback import HISTORY_DEPTH, previous_version

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
HISTORY_ROWS = 50
EVENT_ROWS = 8
#: Webhook outcomes that are not refusals; every other outcome counts as rejected.
NOT_REJECTED = frozenset({"accepted", "ignored", "duplicate"})
#: The login form is a single short field; anything bigger is not a login.
MAX_LOGIN_BYTES = 4096


# --- formatting helpers (also Jinja filters) -----------------------------------------


def age(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int((now if now is not None else time.time()) - timestamp))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def clock(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def mlflow_link(
    ui_url: str | None,
    model_name: str | None,
    version: str | None,
    run_id: str | None = None,
    experiment_id: str | None = None,
) -> str | None:
    """Where the MLflow 3 UI shows this version: the run page when the experiment is known."""
    if not ui_url:
        return None
    if run_id and experiment_id:
        return f"{ui_url}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
    if model_name and version:
        return f"{ui_url}/#/models/{quote(model_name, safe='')}/versions/{quote(str(version))}"
    return None


def sparkline_points(values: list[float], width: int = 120, height: int = 24) -> str:
    """SVG polyline points for the values (requests per second), scaled to fit the box."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values)
    )


@cache
def _templates() -> Jinja2Templates:
    # Built on first use, not at import (style rule: no import-time side effects).
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(age=age, clock=clock, iso=iso, duration=duration)
    templates.env.globals["mlflow_link"] = mlflow_link
    templates.env.globals["sparkline_points"] = sparkline_points
    return templates


# --- auth ----------------------------------------------------------------------------


class LoginRequired(Exception):  # noqa: N818 - control flow to the login page
    pass


def _presented_token(request: Request) -> str | None:
    return bearer(request) or request.cookies.get(COOKIE)


def require_page(request: Request, controller: Controller) -> None:
    """The read rule of the pages: open, or the API token as bearer header or cookie."""
    settings = controller.settings
    if not settings.dashboard_auth:
        return
    if settings.api_token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the dashboard requires a token (ALIASFLOW_DASHBOARD_AUTH=true) but "
            "ALIASFLOW_API_TOKEN is not set",
        )
    if not token_matches(settings, _presented_token(request)):
        raise LoginRequired


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    return RedirectResponse(f"/login?next={quote(target)}", status.HTTP_303_SEE_OTHER)


def _fragment_refused() -> Response:
    return Response(
        "your dashboard session has ended: reload the page to log in again",
        status.HTTP_401_UNAUTHORIZED,
        media_type="text/plain",
    )


def _safe_next(target: str | None) -> str:
    # Only local paths: `//evil.example` or `https://...` would make this an open redirect.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


# --- view models -----------------------------------------------------------------------


def _controller_view(controller: Controller) -> dict[str, Any]:
    state = controller.state
    manifests = controller.manifests
    counters = controller.webhook_counters()
    rejected = {k: v for k, v in sorted(counters.items()) if k not in NOT_REJECTED and v}
    return {
        "started_at": state.started_at,
        "last_poll_at": state.last_poll_at,
        "last_poll_error": state.last_poll_error,
        "registry_reachable": state.registry_reachable,
        "webhook_registered": state.webhook_registered,
        "webhook_error": state.webhook_error,
        "accepted": counters.get("accepted", 0),
        "ignored": counters.get("ignored", 0),
        "duplicate": counters.get("duplicate", 0),
        "rejected": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "stored_deliveries": controller.delivery_counts(),
        "manifest_errors": [str(e) for e in manifests.errors],
        "manifest_revision": manifests.revision,
        "store_error": controller.store_error,
    }


def overview_context(controller: Controller) -> dict[str, Any]:
    return {
        "deployments": [deployment_out(view) for view in controller.deployments()],
        "controller": _controller_view(controller),
        "now": time.time(),
        "ui_url": controller.settings.mlflow_ui_url,
    }


def _manifest_yaml(row: DeploymentOut, controller: Controller) -> str | None:
    """The manifest as loaded, as YAML; secretEnv only ever holds `fromEnv` names."""
    loaded = controller.manifests.deployments.get(row.name)
    if loaded is None:
        return None
    document = loaded.deployment.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _events(row: DeploymentOut, history: list[SyncRecord]) -> list[dict[str, Any]]:
    events = [
        {
            "at": row.updated_at,
            "kind": "status",
            "text": f"{row.sync} / {row.health}: {row.message}",
        }
    ]
    for record in history[: EVENT_ROWS - 1]:
        what = record.action or "sync"
        events.append(
            {
                "at": record.finished_at or record.started_at,
                "kind": record.result.value,
                "text": f"{record.trigger} {what} of version {record.model_version or '?'}: "
                f"{record.result.value}" + (f" — {record.message}" if record.message else ""),
            }
        )
    return events


def deployment_context(controller: Controller, name: str) -> dict[str, Any] | None:
    try:
        row = detail_of(controller, name)
    except NotFoundError:
        return None
    history = controller.history(name, HISTORY_DEPTH)
    rollback_to = (
        previous_version(row.served_version, row.desired_version, history) if row.alias else None
    )
    return {
        "d": row,
        "history": history[:HISTORY_ROWS],
        "events": _events(row, history),
        "manifest": _manifest_yaml(row, controller),
        "manifest_file": row.manifest_file,
        "rollback_to": rollback_to,
        "now": time.time(),
        "ui_url": controller.settings.mlflow_ui_url,
        "controller": _controller_view(controller),
    }


# --- routes ----------------------------------------------------------------------------


def _page(request: Request, template: str, context: dict[str, Any], code: int = 200) -> Response:
    settings_auth = request.app.state.controller.settings.dashboard_auth
    context = {**context, "dashboard_auth": settings_auth}
    response = _templates().TemplateResponse(request, template, context, status_code=code)
    # Live data: never let a proxy or the back button show a stale status.
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, controller: ControllerDep) -> Response:
    try:
        require_page(request, controller)
    except LoginRequired:
        return _login_redirect(request)
    context = await run_in_threadpool(overview_context, controller)
    return _page(request, "overview.html", context)


@router.get("/fragments/overview", response_class=HTMLResponse)
async def overview_fragment(request: Request, controller: ControllerDep) -> Response:
    try:
        require_page(request, controller)
    except LoginRequired:
        return _fragment_refused()
    context = await run_in_threadpool(overview_context, controller)
    return _page(request, "_overview_live.html", context)


@router.get("/deployments/{name}", response_class=HTMLResponse)
async def deployment_page(name: str, request: Request, controller: ControllerDep) -> Response:
    try:
        require_page(request, controller)
    except LoginRequired:
        return _login_redirect(request)
    context = await run_in_threadpool(deployment_context, controller, name)
    if context is None:
        return _page(request, "not_found.html", {"name": name}, status.HTTP_404_NOT_FOUND)
    return _page(request, "deployment.html", context)


@router.get("/fragments/deployments/{name}", response_class=HTMLResponse)
async def deployment_fragment(name: str, request: Request, controller: ControllerDep) -> Response:
    try:
        require_page(request, controller)
    except LoginRequired:
        return _fragment_refused()
    context = await run_in_threadpool(deployment_context, controller, name)
    if context is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deployment named {name!r}")
    return _page(request, "_deployment_live.html", context)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, controller: ControllerDep, next: str = "/") -> Response:
    if not controller.settings.dashboard_auth:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    return _page(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, controller: ControllerDep) -> Response:
    body = await request.body()
    fields = parse_qs(body[:MAX_LOGIN_BYTES].decode("utf-8", "replace"))
    given = (fields.get("token") or [""])[0].strip()
    target = _safe_next((fields.get("next") or ["/"])[0])
    if not controller.settings.dashboard_auth:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    if not token_matches(controller.settings, given):
        error = (
            "ALIASFLOW_API_TOKEN is not set on the controller, so nobody can log in"
            if controller.settings.api_token is None
            else "That token does not match the controller's ALIASFLOW_API_TOKEN."
        )
        return _page(
            request,
            "login.html",
            {"next": target, "error": error},
            status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        given,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/static/{filename}")
async def static_file(filename: str) -> Response:
    media_type = STATIC_FILES.get(filename)
    if media_type is None:  # a fixed list: no path ever reaches the filesystem unchecked
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(
        HERE / "static" / filename,
        media_type=media_type,
        headers={"Cache-Control": "no-cache"},
    )
