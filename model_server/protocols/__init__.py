"""The wire protocols the server speaks, each a thin router over `service.py`.

`native` is aliasflow's own `/predict`; `mlflow_scoring` is `mlflow models serve`'s
`/invocations`, `/ping` and `/version`; `v2` is the Open Inference Protocol. None of them
checks input itself: each turns its body into a payload for `inputs.parse_payload` and
its answer from what the shared batcher returns.
"""
