"""A pyfunc that loads fine but predicts NaN: a hot swap must refuse it."""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class NanModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return np.full(len(model_input), np.nan)


set_model(NanModel())
