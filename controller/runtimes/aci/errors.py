"""Azure SDK exceptions wrapped into the controller's error tree, at the edge.

By the time an exception reaches us the SDK's retry policy has already retried 408, 429
and 5xx (honouring `Retry-After`), so what is left is either a refusal of the spec
(4xx: permanent until the manifest changes) or an outage that outlasted the retries
(temporary). Messages carry ARM's error code and message, never a request body, which
could hold secure values.
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
        status = exc.status_code
        text = arm_error_text(exc)
        if status in (401, 403):
            return RuntimeUnavailableError(
                f"{what}: ARM refused the controller's identity (HTTP {status}, {text}); "
                "check its role on the resource group"
            )
        if 400 <= status < 500 and status not in _TEMPORARY_4XX:
            return InvalidSpecError(f"{what}: ACI rejected the container group: {text}")
        return RuntimeUnavailableError(f"{what}: ARM answered HTTP {status} ({text})")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RuntimeUnavailableError(f"{what}: cannot reach ARM: {exc.message}")
    return RuntimeUnavailableError(f"{what}: {type(exc).__name__}: {exc.message}")
