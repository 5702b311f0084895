"""ACI's refusals in the manifest's words: the advice by ARM error code.

The wrapping of Azure SDK exceptions into the controller's error tree is shared by every
Azure runtime (`runtimes/azurearm.py`); what differs is the service's name and what its
error codes ask the manifest to change.
"""

from __future__ import annotations

from azure.core.exceptions import AzureError

from controller.core.errors import ControllerError
from controller.runtimes.azurearm import (
    ErrorVocabulary,
    arm_error_code,
    arm_error_text,
)
from controller.runtimes.azurearm import wrap_azure_error as wrap_arm_error

__all__ = ["arm_error_code", "arm_error_text", "wrap_azure_error"]

# What to change, by ARM error code, for refusals that are about the manifest.
_ADVICE = {
    # 400, as the Azure CLI prints it: "The DNS name label '...' in container group '...'
    # is not available. Try using a different label."
    "DnsNameLabelAlreadyTaken": (
        "set spec.target.aci.dnsNameLabel to a label no other container group in this "
        "region (and, with TenantReuse, of this name in this tenant) uses"
    ),
    # 400 for a PUT that changes what only a delete and create can ("Update containers in
    # Azure Container Instances"). The planner replaces such groups itself when their
    # aliasflow-immutable-hash tag says so; a group without the tag predates it.
    "InvalidContainerGroupUpdate": (
        "this container group has no aliasflow-immutable-hash tag (made by an older "
        "aliasflow), so the change was sent as an update; delete the container group "
        "(az container delete) and the next pass creates it with the new resources"
    ),
    # 409 for more CPU or memory than the region offers a group ("Resource availability
    # by region", learn.microsoft.com/azure/container-instances/
    # container-instances-region-availability; the answer as quoted in
    # MicrosoftDocs/azure-docs#24776). Also how ACI says a region is out of capacity for
    # now; both want a person to lower the request or move it.
    "ServiceUnavailable": (
        "lower spec.resources.cpu or spec.resources.memoryGB (a Linux container group "
        "gets at most 4 CPU and 16 GB in most regions) or choose another location; a "
        "manual sync tries again"
    ),
    # 409 while the group runs an operation ("Container group remains in a transitioning
    # state", learn.microsoft.com/troubleshoot/azure/azure-container-instances).
    "ContainerGroupTransitioning": "an earlier operation is still running; the next pass retries",
}
# Codes that are permanent whatever their HTTP status.
_SPEC_CODES = frozenset({"ServiceUnavailable"})


ACI_ERRORS = ErrorVocabulary("ACI", "container group", _ADVICE, _SPEC_CODES)


def wrap_azure_error(exc: AzureError, what: str) -> ControllerError:
    """`what` names the operation and the group, e.g. "create rg/iris-prod"."""
    return wrap_arm_error(exc, what, ACI_ERRORS)
