"""What the containerapp runtime tests share: a desired state as the reconciler builds it."""

from __future__ import annotations

import hashlib

from controller.core.types import DesiredState, Strategy, TargetKind

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-ml"
ENV = "ml-prod"
SECRET = "s3cr3t-value-never-shown"
CONTROLLER_SECRET = "controller-secret-for-tests"
MODEL = "iris-classifier"


def make_desired(
    name: str = "iris",
    version: str = "1",
    *,
    rg: str = RG,
    environment: str = ENV,
    image: str = "myreg.azurecr.io/aliasflow-server:1",
    env: tuple[tuple[str, str], ...] = (("LOG_LEVEL", "info"),),
    secret: str = SECRET,
    cpu: float = 0.5,
    replicas: tuple[int, int] = (2, 5),
    timeout: int = 20,
    strategy: Strategy = Strategy.HOTSWAP,
) -> DesiredState:
    """As `reconcile.desired` builds it: the spec hash moves with what it covers."""
    spec = f"{image}|{env}|{secret}|{rg}|{environment}|{cpu}|{replicas}"
    return DesiredState(
        name=name,
        target_kind=TargetKind.CONTAINERAPP,
        model_name=MODEL,
        model_version=version,
        run_id=None,
        image=image,
        port=8080,
        cpu=cpu,
        memory_gb=cpu * 2,
        env=env,
        strategy=strategy,
        health_timeout_seconds=timeout,
        secret_env=(("MLFLOW_TRACKING_TOKEN", secret),),
        spec_hash=hashlib.sha256(spec.encode()).hexdigest()[:16],
        target_settings=(
            ("concurrentRequests", "20"),
            ("environment", environment),
            ("location", "westeurope"),
            ("maxReplicas", str(replicas[1])),
            ("minReplicas", str(replicas[0])),
            ("resourceGroup", rg),
            ("subscriptionId", SUB),
        ),
    )
