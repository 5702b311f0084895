"""A pyfunc whose artifact cannot be read at load time: a hot swap must refuse it."""

import json

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class UnloadableModel(PythonModel):
    def load_context(self, context):
        with open(context.artifacts["weights"]) as handle:
            self.weights = json.load(handle)  # the file is not JSON: raises

    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


set_model(UnloadableModel())
