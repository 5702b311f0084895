"""A pyfunc that loads, answers fast and never errs, yet predicts one class for every
input: only the prediction shift against the version it replaced gives it away."""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class AlwaysVirginica(PythonModel):
    def predict(self, context, model_input, params=None):
        return np.full(len(model_input), 2.0)


set_model(AlwaysVirginica())
