"""The model server's prediction metric families the controller reads
(docs/server-contract.md, "Metrics the controller reads"): the analysis judges them, the
Container Apps runtime sums them over replicas. One spelling for both."""

from __future__ import annotations

REQUESTS = "aliasflow_server_prediction_requests"
LATENCY = "aliasflow_server_prediction_latency_seconds"
OUTPUTS = "aliasflow_server_prediction_outputs"
# The shadow's own counters: its requests (ok, error, dropped), latency, and agreement.
SHADOW_REQUESTS = "aliasflow_server_shadow_requests"
SHADOW_LATENCY = "aliasflow_server_shadow_latency_seconds"
SHADOW_AGREEMENT = "aliasflow_server_shadow_agreement"
