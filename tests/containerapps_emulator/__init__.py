"""An in-repository Azure Container Apps emulator (ARM + AAD over loopback HTTPS).

Built for the `containerapp` runtime (issue 15) and driven by the real
`azure-mgmt-appcontainers` SDK (`ContainerAppsAPIClient`, api-version 2026-07-01, the
SDK 5.1 default). Sources: "spec" = azure-rest-api-specs
`specification/app/resource-manager/Microsoft.App/ContainerApps/stable/2026-07-01/
openapi.json` and its `examples/` (the definitions used are transcribed under
`tests/data/azure/app/2026-07-01/`); "docs" = learn.microsoft.com/azure/container-apps
pages `revisions`, `traffic-splitting`, `scale-app`. Each rule cites its source where
it is coded; rules without one say "Assumption".

Emulated
- Container apps: PUT (201 create / 200 update, `Azure-AsyncOperation`), PATCH (JSON
  merge patch, 202 + `Location`), GET, DELETE (202, or 204 when absent), list by
  resource group with `nextLink` paging, `listSecrets`; tags; secret values left out of
  every GET (spec: `x-ms-secret`); the async operation status and result resources.
- Revisions (docs: revisions): a new, immutable revision `<app>--<suffix>` exactly when
  `properties.template` changes; traffic, secrets and other configuration changes make
  none. `latestRevisionName`, `latestReadyRevisionName`, FQDNs; single mode keeps only
  the latest active. Traffic weights must add up to 100 in multiple mode (docs:
  traffic-splitting). Scale limits min 0-1000, max 1-1000, min <= max (docs: scale-app;
  the spec has no bounds). List/get revisions, activate, deactivate, restart; replicas.
- Managed environments: GET (seeded by tests with `add_environment`).
- ARM: 401 without a known bearer token, 400 for a missing or other api-version, 429
  with `Retry-After` and 500 injection, 409 while an operation runs on the app, request
  bodies checked against the spec's `ContainerApp` schema (400 InvalidRequestContent).
- Every response body is validated against the spec's schema for that operation
  (`ContainerApp`, `ContainerAppCollection`, `Revision`, `RevisionCollection`,
  `ReplicaCollection`, `SecretsCollection`, `ManagedEnvironment`, `ErrorResponse`,
  `DefaultErrorResponse`, common-types `OperationStatusResult`); violations are recorded.
- Backed mode: replicas are real `aliasflow serve` processes started from the revision's
  container env; an `Ingress` per app splits requests by the revision weights and
  round-robins over ready replicas; `restart_replica` and `scale` (a stand-in for load-
  driven autoscaling) bring processes up from the revision env; `resolve_endpoint` maps
  app and revision FQDNs to the ingress.
- Counting mode (default): no processes; replicas are records (`minReplicas` of them).

Not emulated: load-driven autoscaling and scale from zero on a request (use `scale`),
Dapr, custom domains, auth configs, jobs, labels' own FQDNs, sticky sessions, probes
(readiness is `/readyz` of the model server), ACR pulls, the environment's own CRUD,
`maxInactiveRevisions` pruning. Error codes marked "Assumption" are not in the spec.
"""

from tests.containerapps_emulator.server import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    ContainerAppsEmulator,
)

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "TENANT", "ContainerAppsEmulator"]
