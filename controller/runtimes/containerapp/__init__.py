"""The `containerapp` runtime: Azure Container Apps through the real Azure SDK."""

from controller.runtimes.containerapp.runtime import ContainerAppRuntime
from controller.runtimes.containerapp.spec import RegistryAccess, ServerWiring

__all__ = ["ContainerAppRuntime", "RegistryAccess", "ServerWiring"]
