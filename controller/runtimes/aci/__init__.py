"""The `aci` runtime: Azure Container Instances through the real Azure SDK."""

from controller.runtimes.aci.acr import AcrImageResolver
from controller.runtimes.aci.arm import RetryOptions
from controller.runtimes.aci.quota import QuotaLimiter
from controller.runtimes.aci.runtime import AciRuntime
from controller.runtimes.aci.spec import RegistryCredential

__all__ = ["AciRuntime", "AcrImageResolver", "QuotaLimiter", "RegistryCredential", "RetryOptions"]
