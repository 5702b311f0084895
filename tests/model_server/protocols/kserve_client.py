"""Run by the reference venv's python (KServe's SDK cannot live in the project venv):
drives a V2 server with KServe's own `InferenceRESTClient` and prints what it saw as JSON.

    python kserve_client.py BASE_URL MODEL_NAME REQUEST_JSON_FILE
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, model: str, spec: dict) -> dict:
    """`spec` is {"columns": [...], "rows": [[...]]}."""
    rows = np.asarray(spec["rows"], dtype=np.float64)
    inputs = []
    for i, column in enumerate(spec["columns"]):
        tensor = InferInput(name=column, shape=[len(rows), 1], datatype="FP64")
        tensor.set_data_from_numpy(rows[:, i : i + 1], binary_data=False)
        inputs.append(tensor)
    request = InferRequest(model_name=model, infer_inputs=inputs, request_id="kserve-1")
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        live = await client.is_server_live(base_url)
        ready = await client.is_server_ready(base_url)
        model_ready = await client.is_model_ready(base_url, model)
        response = await client.infer(base_url, request, model_name=model)
    finally:
        await client.close()
    return {
        "live": live,
        "ready": ready,
        "model_ready": model_ready,
        "id": response.id,
        "model_name": response.model_name,
        "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs},
    }


if __name__ == "__main__":
    with open(sys.argv[3]) as handle:
        request_spec = json.load(handle)
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], request_spec))))
