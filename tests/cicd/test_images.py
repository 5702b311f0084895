"""Each image's start command, run as the image would run it, reaches ready.

No Docker engine runs here, so the test reads the final stage of each Dockerfile (ENV,
WORKDIR, CMD, HEALTHCHECK) and runs exactly that command with exactly that environment,
the way `docker run` would, with three stand-ins that Docker itself would provide:
- `/opt/venv/bin` (the image's venv) is this test run's venv, which holds the same package;
- the WORKDIR and HOME are temporary directories;
- the published port is a free loopback port: for the server, whose CMD names
  `--port 8080`, that value (and the HEALTHCHECK's URL) is rewritten, as `-p` would map it;
  the controller reads ALIASFLOW_PORT, which is overridden as `docker run -e` would.
The HEALTHCHECK command then has to exit 0 against the running process, and fail once
it has stopped. The baked mode runs the build stage's `bake_model.py` against the real
MLflow server, then serves the baked directory with MLflow out of reach.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dockerfile_stage import FinalStage, final_stage, stages

from aliasflow_cli.devstack import MlflowServer
from controller.runtimes.netutil import free_port, stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
IMAGE_VENV_BIN = "/opt/venv/bin"
SERVER_PORT = "8080"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
COLUMNS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def container_env(stage: FinalStage, home: Path, **overrides: str) -> dict[str, str]:
    """The image's environment, with its venv mapped onto ours and `-e` overrides on top."""
    env = dict(stage.env)
    assert env["PATH"].split(":")[0] == IMAGE_VENV_BIN, "the image's venv must come first"
    env["PATH"] = env["PATH"].replace(IMAGE_VENV_BIN, str(Path(sys.executable).parent), 1)
    env["HOME"] = str(home)
    env.update(overrides)
    return env


def publish(argv: list[str], container_port: str, host_port: int) -> list[str]:
    """Rewrite the container port in a command, as `docker run -p HOST:CONTAINER` maps it."""
    return [
        part.replace(f":{container_port}/", f":{host_port}/")
        if part != container_port
        else str(host_port)
        for part in argv
    ]


def start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None, f"{argv[0]} not on the image PATH"
    assert Path(executable).parent == Path(sys.executable).parent
    with log.open("wb") as out:
        return subprocess.Popen(
            [executable, *argv[1:]], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def healthcheck(stage: FinalStage, env: dict[str, str], host_port: int) -> int:
    assert stage.healthcheck is not None
    argv = publish(stage.healthcheck.argv, SERVER_PORT, host_port)
    timeout = float(stage.healthcheck.options["timeout"].rstrip("s"))
    return subprocess.run(
        [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]],
        env=env,
        capture_output=True,
        timeout=timeout + 5,
        check=False,
    ).returncode


def stop_like_docker(process: subprocess.Popen[bytes]) -> int:
    """`docker stop`: SIGTERM, then SIGKILL after the grace period; the exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stop_process(process)
        pytest.fail("the process ignored SIGTERM for 15 s")


# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so that the parent
# sees how it ended (Docker reports 143); a clean exit 0 is fine too.
CLEAN_STOP = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def registered_model(mlflow_server: MlflowServer) -> tuple[str, str]:
    """A small iris classifier, logged and registered in the session's MLflow server."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_server.url)
    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = COLUMNS
    model = LogisticRegression(max_iter=500).fit(frame, target)
    name = f"cicd-image-{os.getpid()}"
    mlflow.set_experiment("cicd-images")
    with mlflow.start_run():
        mlflow.log_metric("accuracy", float(model.score(frame, target)))
        mlflow.set_tag("git_commit", "0123456789abcdef")
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            signature=infer_signature(frame, model.predict(frame).astype("int64")),
            input_example=pd.DataFrame(ROWS, columns=COLUMNS),
            pip_requirements=["mlflow", "scikit-learn"],
        )
    version = mlflow.register_model(info.model_uri, name).version
    return name, str(version)


def serve_and_probe(
    stage: FinalStage, env_overrides: dict[str, str], tmp_path: Path
) -> tuple[dict[str, object], list[int]]:
    """Run the server image's CMD, wait for /readyz, predict, run the HEALTHCHECK."""
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = container_env(stage, home, **env_overrides)
    argv = publish(stage.argv, SERVER_PORT, port)
    process = start(argv, env, home, tmp_path / "server.log")
    try:
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout=90, process=process)
        except Exception:
            pytest.fail((tmp_path / "server.log").read_text(errors="replace")[-3000:])
        metadata = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()
        predicted = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"instances": ROWS}, timeout=10
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == [0, 2]
        codes = [healthcheck(stage, env, port)]
    finally:
        exit_code = stop_like_docker(process)
    codes.append(healthcheck(stage, env, port))
    assert exit_code in CLEAN_STOP, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
    return metadata, codes


def test_server_image_serves_model_from_mlflow(
    mlflow_server: MlflowServer, registered_model: tuple[str, str], tmp_path: Path
) -> None:
    stage = final_stage(ROOT / "Dockerfile.server")
    assert stage.argv == ["aliasflow", "serve", "--host", "0.0.0.0", "--port", SERVER_PORT]
    assert stage.user == "10001:10001"
    assert stage.env["MODEL_URI"] == "", "an unbaked image must not point at a model"
    name, version = registered_model
    # What the controller passes to every server container.
    metadata, health = serve_and_probe(
        stage,
        {"MODEL_URI": f"models:/{name}/{version}", "MLFLOW_TRACKING_URI": mlflow_server.url},
        tmp_path,
    )
    assert (metadata["name"], metadata["version"], metadata["source"]) == (
        name,
        version,
        "registry",
    )
    assert health == [0, 1], "HEALTHCHECK must pass while serving and fail once stopped"


def test_server_image_boots_from_baked_model(
    mlflow_server: MlflowServer, registered_model: tuple[str, str], tmp_path: Path
) -> None:
    name, version = registered_model
    baked_uri = f"models:/{name}/{version}"
    # The build stage runs bake_model.py into /models/baked; run that same step here.
    model_stage = stages(ROOT / "Dockerfile.server")["model"]
    bake_run = next(rest for keyword, rest in model_stage if keyword == "RUN")
    assert 'python /src/bake_model.py "$BAKED_MODEL_URI" /models/baked' in bake_run
    baked = tmp_path / "models" / "baked"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bake_model.py"), baked_uri, str(baked)],
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (baked / "MLmodel").is_file()
    assert (baked / "aliasflow-model.json").is_file()

    stage = final_stage(ROOT / "Dockerfile.server", {"BAKED_MODEL_URI": baked_uri})
    assert stage.env["MODEL_URI"] == "/models/baked"
    # Same image env, the baked directory where the image keeps it, and MLflow out of
    # reach: a baked image must boot without it.
    metadata, health = serve_and_probe(
        stage,
        {"MODEL_URI": str(baked), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},
        tmp_path,
    )
    assert metadata["source"] == "baked"
    assert (metadata["name"], metadata["version"]) == (name, version)
    assert metadata["metrics"]["accuracy"] > 0.9
    assert metadata["git_sha"] == "0123456789abcdef"
    assert health == [0, 1]


def test_bake_refuses_an_unpinned_uri(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bake_model.py"), "runs:/abc/model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "models:/<name>/<version>" in done.stderr


def test_controller_image_reaches_healthy(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    stage = final_stage(ROOT / "Dockerfile.controller")
    assert stage.argv == ["aliasflow", "controller"]
    assert stage.user == "10001:10001"
    assert stage.env["ALIASFLOW_HOST"] == "0.0.0.0"
    port = free_port()
    workdir = tmp_path / "workdir"  # stands in for WORKDIR /var/lib/aliasflow
    (workdir / "manifests").mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    env = container_env(
        stage,
        home,
        ALIASFLOW_PORT=str(port),
        ALIASFLOW_DATA_DIR=str(workdir / "data"),
        MLFLOW_TRACKING_URI=mlflow_server.url,
    )
    process = start(stage.argv, env, workdir, tmp_path / "controller.log")
    try:
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/healthz", timeout=60, process=process)
        except Exception:
            pytest.fail((tmp_path / "controller.log").read_text(errors="replace")[-3000:])
        assert healthcheck(stage, env, port) == 0
    finally:
        exit_code = stop_like_docker(process)
    assert healthcheck(stage, env, port) != 0
    log = (tmp_path / "controller.log").read_text(errors="replace")
    assert exit_code in CLEAN_STOP, log[-3000:]
