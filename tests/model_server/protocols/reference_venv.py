"""A second virtualenv with the reference V2 servers and clients: MLServer with its MLflow
runtime, and KServe's Python SDK (its `InferenceRESTClient`).

Why not the project venv: MLServer 1.7 and KServe pin pandas < 3, protobuf < 6 and
FastAPI < 0.116, which would downgrade what the server itself runs on (pandas 3,
FastAPI 0.16x). MLflow and scikit-learn are pinned to the project venv's versions so both
sides unpickle the same model files the same way. Built once (under .venv/, so `make
clean` removes it) and reused while its requirements are unchanged.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv" / "oip"
PYTHON = VENV / "bin" / "python"


def requirements() -> list[str]:
    return [
        "mlserver==1.7.1",
        "mlserver-mlflow==1.7.1",
        "kserve==0.16.0",
        f"mlflow=={version('mlflow')}",
        f"scikit-learn=={version('scikit-learn')}",
    ]


def ensure_reference_venv() -> Path:
    """The venv's python, creating or refreshing the venv when its requirements changed."""
    wanted = "\n".join(requirements())
    stamp = VENV / ".installed"
    if stamp.is_file() and stamp.read_text() == hashlib.sha256(wanted.encode()).hexdigest():
        return PYTHON
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements()],
        check=True,
        timeout=900,
    )
    stamp.write_text(hashlib.sha256(wanted.encode()).hexdigest())
    return PYTHON
