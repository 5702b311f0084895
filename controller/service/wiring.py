"""Settings → the parts a controller is built from (runtimes, image resolver, admin key).

Runtimes never see settings; this module is where configuration becomes arguments.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from controller.core.ports import HistoryStore, Notifier, Runtime, SilentNotifier
from controller.runtimes.link import ServerLinks
from controller.service.settings import ControllerSettings


def load_or_create_token(path: Path) -> str:
    """The model servers' admin token: generated once, kept private in the data dir."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def admin_token(settings: ControllerSettings) -> str:
    configured = settings.server_admin_token
    if configured is not None:
        return configured.get_secret_value()
    return load_or_create_token(settings.data_dir / "server-admin-token")


def build_links(settings: ControllerSettings) -> ServerLinks:
    """Linked servers' desired versions and reports; a report lives three poll intervals."""
    return ServerLinks(report_ttl=3 * settings.containerapp_link_poll_seconds)


def build_runtimes(
    settings: ControllerSettings, token: str, links: ServerLinks | None = None
) -> dict[str, Runtime]:
    from controller.runtimes.local import LocalRuntime

    # Every runtime gets the controller's secret, never a server key: each deployment's
    # key derives from it (controller/runtimes/common.py, server_key).
    runtimes: dict[str, Runtime] = {
        "local": LocalRuntime(settings.data_dir, token, settings.mlflow_tracking_uri),
    }
    if settings.docker_enabled:
        # Imported only when enabled: the docker SDK is not needed otherwise. Building the
        # runtime does not contact the engine, so the controller starts while Docker is down.
        from controller.runtimes.docker import DockerRuntime

        runtimes["docker"] = DockerRuntime(
            admin_token=token,
            tracking_uri=settings.docker_tracking_uri or settings.mlflow_tracking_uri,
            data_dir=settings.data_dir,
            base_url=settings.docker_host,
        )
    if settings.aci_groups:
        from controller.service.azure import build_aci_runtime

        runtimes["aci"] = build_aci_runtime(settings, token)
    if settings.containerapp_groups:
        from controller.service.azure import build_containerapp_runtime

        runtimes["containerapp"] = build_containerapp_runtime(
            settings, token, links or build_links(settings)
        )
    return runtimes


def build_image_resolver(settings: ControllerSettings) -> Callable[[str], str] | None:
    """Tags on the configured ACR become digests; None when no registry is configured."""
    if not settings.acr_login_server:
        return None
    from controller.service.azure import build_acr_resolver

    return build_acr_resolver(settings)


def build_notifier(settings: ControllerSettings, store: HistoryStore) -> Notifier:
    from controller.notify.sender import WebhookNotifier, channels

    targets = channels(
        webhook_url=settings.notify_webhook_url,
        webhook_secret=_reveal(settings.notify_webhook_secret),
        teams_url=_reveal(settings.notify_teams_url),
        slack_url=_reveal(settings.notify_slack_url),
    )
    return WebhookNotifier(targets, store) if targets else SilentNotifier()


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
