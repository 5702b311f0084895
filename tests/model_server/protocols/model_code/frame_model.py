"""A pyfunc (no native flavor) answering a two-column DataFrame: MLflow's JSON for it is
a list of records, which every protocol must reproduce."""

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class FrameModel(PythonModel):
    def predict(self, context, model_input, params=None):
        total = model_input.sum(axis=1)
        return pd.DataFrame({"total": total, "big": total > 10.0})


set_model(FrameModel())
