"""A pyfunc that fails on a share of its inputs (long petals): the rows a warm-up example
does not exercise, so it loads and passes its checks, then errs under real traffic."""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class FailsOnLongPetals(PythonModel):
    def predict(self, context, model_input, params=None):
        petal = model_input["petal_length_cm"].to_numpy()
        if (petal > 5.0).any():
            raise ValueError("this version cannot score petals longer than 5 cm")
        return np.where(petal < 2.5, 0.0, 1.0)


set_model(FailsOnLongPetals())
