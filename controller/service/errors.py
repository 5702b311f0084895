"""What the service layer refuses, by kind; `api/errors.py` maps each kind to a status."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the controller understood and refuses; `detail` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    pass


class ConflictError(ServiceError):
    """The request cannot apply to the deployment as it is (e.g. a pinned version)."""


class DisabledError(ServiceError):
    """The feature is switched off by configuration; the detail says how to turn it on."""


class UnauthorizedError(ServiceError):
    """The caller did not prove who it is (a missing, stale or wrong signature)."""


class NotReadyError(ServiceError):
    """The controller cannot answer yet; asking again shortly will do."""


class InvalidRequestError(ServiceError):
    """A body that does not say what the endpoint needs; the detail names each field."""
