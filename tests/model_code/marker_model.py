"""A pyfunc whose `load_context` leaves a marker file: proof that its code ran.

The own-model rule (model_server/ownership.py) must refuse it before any import, so a
refused swap never creates the file named by `ALIASFLOW_TEST_MARKER`.
"""

import os
from pathlib import Path

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class MarkerModel(PythonModel):
    def load_context(self, context):
        marker = os.environ.get("ALIASFLOW_TEST_MARKER")
        if marker:
            Path(marker).write_text("load_context ran\n")

    def predict(self, context, model_input, params=None):
        return [0.0] * len(model_input)


set_model(MarkerModel())
