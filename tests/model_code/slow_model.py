"""A pyfunc that is fine but slow to load: a hot swap must give up on it at its deadline.

The delay comes from the model config (`load_seconds`), so one file serves any test.
"""

import time

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class SlowModel(PythonModel):
    def load_context(self, context):
        time.sleep(float((context.model_config or {}).get("load_seconds", 20)))

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


set_model(SlowModel())
