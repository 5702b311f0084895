"""Azure SDK exceptions wrapped into the controller's error tree, at the edge.

By the time an exception reaches us the SDK's retry policy has already retried 408, 429
and 5xx (honouring `Retry-After`; a PUT only on 429, see runtime.py), so what is left is
either a refusal of the spec (permanent until the manifest changes) or an outage that
outlasted the retries (temporary). Messages carry ARM's error code and message, never a
request body, which could hold secure values; where ARM's code says what the manifest
must change, the message says it in the manifest's words.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from controller.core.errors import ControllerError, InvalidSpecError, RuntimeUnavailableError

# 4xx answers that mean "not now" rather than "never".
_TEMPORARY_4XX = frozenset({401, 403, 404, 408, 409, 423, 429})

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


def arm_error_code(exc: HttpResponseError) -> str | None:
    code = getattr(getattr(exc, "error", None), "code", None)
    return str(code) if code else None


def arm_error_text(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code or 'Error'}: {message or ''}".strip()
    reason = getattr(exc, "reason", None) or ""
    return f"HTTP {exc.status_code} {reason}".strip()


def wrap_azure_error(exc: AzureError, what: str) -> ControllerError:
    """`what` names the operation and the group, e.g. "create rg/iris-prod"."""
    if isinstance(exc, ClientAuthenticationError) and not isinstance(exc, HttpResponseError):
        return RuntimeUnavailableError(f"{what}: Azure authentication failed: {exc.message}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return _wrap_answer(exc, exc.status_code, what)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RuntimeUnavailableError(f"{what}: cannot reach ARM: {exc.message}")
    return RuntimeUnavailableError(f"{what}: {type(exc).__name__}: {exc.message}")


def _wrap_answer(exc: HttpResponseError, status: int, what: str) -> ControllerError:
    text = arm_error_text(exc)
    code = arm_error_code(exc)
    advice = f"; {_ADVICE[code]}" if code in _ADVICE else ""
    if status in (401, 403):
        return RuntimeUnavailableError(
            f"{what}: ARM refused the controller's identity (HTTP {status}, {text}); "
            "check its role on the resource group"
        )
    if 400 <= status < 500 and (status not in _TEMPORARY_4XX or code in _SPEC_CODES):
        return InvalidSpecError(f"{what}: ACI rejected the container group: {text}{advice}")
    return RuntimeUnavailableError(f"{what}: ARM answered HTTP {status} ({text}){advice}")
