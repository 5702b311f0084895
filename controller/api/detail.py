"""One deployment in full, as the API's detail route and the dashboard's page show it."""

from __future__ import annotations

from controller.api.schemas import DeploymentDetail, deployment_detail
from controller.service.controller import Controller


def detail_of(controller: Controller, name: str) -> DeploymentDetail:
    """The deployment with its watch, live traffic and quarantined versions."""
    view = controller.deployment(name)
    return deployment_detail(
        view,
        controller.bake(name),
        controller.traffic(name),
        controller.quarantined(view.status.model_name),
    )
