"""Settings → the Azure runtimes (aci, containerapp) and an ACR resolver, with one shared
Azure credential.

`DefaultAzureCredential` covers production (managed identity, workload identity, or a
service principal from AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET); the
authority, instance-discovery and CA options exist for other clouds and the emulator.

Each cloud's Entra ID issues tokens for its own audiences: ARM's is the ARM endpoint
itself ("Multicloud: connect to all regions with the Azure libraries for Python",
learn.microsoft.com/azure/developer/python/sdk/azure-sdk-sovereign-domain, passes
`credential_scopes=[resource_manager + "/.default"]`), and ACR takes
https://containerregistry.azure.net in the public cloud or the cloud's ARM audience
(azure-containerregistry's `audience`: "https://management.azure.com",
"https://management.chinacloudapi.cn" or "https://management.usgovcloudapi.net").
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from controller.runtimes.aci.acr import ACR_AUDIENCE, AcrImageResolver
from controller.runtimes.aci.quota import QuotaLimiter
from controller.runtimes.aci.runtime import AciRuntime
from controller.runtimes.azurearm import ARM_URL, RegistryCredential, RetryOptions
from controller.runtimes.containerapp import ContainerAppRuntime, RegistryAccess, ServerWiring
from controller.runtimes.link import ServerLinks

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from controller.service.settings import ControllerSettings


def _tls(settings: ControllerSettings) -> dict[str, Any]:
    return {"connection_verify": str(settings.aci_ca_bundle)} if settings.aci_ca_bundle else {}


@cache
def _credential(
    authority: str | None, disable_discovery: bool, ca_bundle: str | None
) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    kwargs: dict[str, Any] = {}
    if authority:
        kwargs["authority"] = authority
    if disable_discovery:
        kwargs["disable_instance_discovery"] = True
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return DefaultAzureCredential(**kwargs)


def build_credential(settings: ControllerSettings) -> TokenCredential:
    return _credential(
        settings.aci_authority_host,
        settings.aci_disable_instance_discovery,
        str(settings.aci_ca_bundle) if settings.aci_ca_bundle else None,
    )


def arm_audience(settings: ControllerSettings) -> str:
    return (settings.aci_audience or settings.aci_arm_url).rstrip("/")


def acr_audience(settings: ControllerSettings) -> str:
    if settings.acr_audience:
        return settings.acr_audience.rstrip("/")
    arm = arm_audience(settings)
    return ACR_AUDIENCE if arm == ARM_URL else arm


def build_aci_runtime(settings: ControllerSettings, admin_token: str) -> AciRuntime:
    registry: tuple[RegistryCredential, ...] = ()
    if settings.acr_login_server and settings.acr_username and settings.acr_password:
        registry = (
            RegistryCredential(
                settings.acr_login_server,
                settings.acr_username,
                settings.acr_password.get_secret_value(),
            ),
        )
    return AciRuntime(
        build_credential(settings),
        settings.aci_groups,
        admin_token,
        tracking_uri=settings.mlflow_tracking_uri,
        base_url=settings.aci_arm_url,
        audience=arm_audience(settings),
        connection_verify=str(settings.aci_ca_bundle) if settings.aci_ca_bundle else None,
        registry_credentials=registry,
        quota=QuotaLimiter(settings.aci_quota_limit, settings.aci_quota_window_seconds),
        retry=RetryOptions(total=settings.aci_retry_total),
        polling_interval=settings.aci_polling_interval_seconds,
        tls_image=settings.aci_tls_image,
    )


def build_containerapp_runtime(
    settings: ControllerSettings, secret: str, links: ServerLinks
) -> ContainerAppRuntime:
    """The servers get the controller's address, their poll interval and their own key
    (derived from `secret`); registry access by managed identity, else by password."""
    registry = None
    if settings.acr_login_server and settings.containerapp_registry_identity:
        registry = RegistryAccess(
            settings.acr_login_server, identity=settings.containerapp_registry_identity
        )
    elif settings.acr_login_server and settings.acr_username and settings.acr_password:
        registry = RegistryAccess(
            settings.acr_login_server,
            username=settings.acr_username,
            password=settings.acr_password.get_secret_value(),
        )
    wiring = ServerWiring(
        settings.containerapp_controller,
        settings.containerapp_link_poll_seconds,
        tracking_uri=settings.mlflow_tracking_uri,
        registry=registry,
    )
    return ContainerAppRuntime(
        build_credential(settings),
        settings.containerapp_groups,
        secret,
        links,
        wiring,
        base_url=settings.aci_arm_url,
        audience=arm_audience(settings),
        connection_verify=str(settings.aci_ca_bundle) if settings.aci_ca_bundle else None,
        retry=RetryOptions(total=settings.aci_retry_total),
        polling_interval=settings.aci_polling_interval_seconds,
        drain_seconds=settings.containerapp_drain_seconds,
    )


def build_acr_resolver(settings: ControllerSettings) -> AcrImageResolver:
    assert settings.acr_login_server is not None
    return AcrImageResolver(
        settings.acr_login_server,
        build_credential(settings),
        endpoint=settings.acr_endpoint,
        audience=acr_audience(settings),
        cache_seconds=min(settings.poll_interval_seconds, 60.0),
        client_kwargs=_tls(settings),
    )
