"""A pyfunc that answers with one prediction too many: a hot swap must refuse it."""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class WrongShapeModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input) + 1)


set_model(WrongShapeModel())
