"""A pyfunc that loads fast and answers right, but slowly: a watched promotion must see
its p99 and roll it back. The delay per call comes from the model config."""

import time

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class SlowAnswers(PythonModel):
    def load_context(self, context):
        self.seconds = float((context.model_config or {}).get("predict_seconds", 0.4))

    def predict(self, context, model_input, params=None):
        time.sleep(self.seconds)
        petal = model_input["petal_length_cm"].to_numpy()
        return np.where(petal < 2.5, 0.0, np.where(petal < 4.9, 1.0, 2.0))


set_model(SlowAnswers())
