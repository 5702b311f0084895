"""Load one MLflow model version, describe it, warm it up and check its output.

Used at boot and by every hot swap, always off the event loop (it blocks: downloads,
unpickling). A model that fails here never serves: the caller keeps what it had.

Where a model comes from (`LoadedModel.source`):
- "registry": `models:/name/N` (or `models:/name@alias`) through the MLflow tracking URI;
- "baked": a local directory holding an MLflow model plus `aliasflow-model.json`
  (`{"name", "version", "run_id", "metrics", "git_sha"}`), as the Docker image ships it:
  no MLflow server needed;
- "local": any other local MLflow model directory or URI MLflow can download.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_server import registry_rest
from model_server.bootfile import Boot, read_boot_file
from model_server.errors import ModelCheckError, ModelLoadError
from model_server.inputs import Batch, parse_payload
from model_server.kernels import compile_kernel
from model_server.predictors import (
    BootPredictor,
    OutputError,
    Predictor,
    PyfuncPredictor,
    SklearnPredictor,
    check_output,
)
from model_server.settings import ServerSettings
from model_server.signature import ColumnKind, InputSpec, spec_from_signature

log = logging.getLogger("model_server")

BAKED_METADATA_FILE = "aliasflow-model.json"
GIT_SHA_TAGS = ("git_commit", "git_sha", "mlflow.source.git.commit")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(eq=False)
class LoadedModel:
    """A loaded, warmed and checked model; immutable once it serves, but for one step:
    a model booted from a boot file (bootfile.py) is completed in the background, which
    sets `pyfunc`, replaces `predictor` with the full one and sets `completed`.
    """

    name: str | None
    version: str | None
    run_id: str | None
    model_uri: str
    source: str
    predictor: Predictor
    spec: InputSpec | None
    signature: dict[str, Any] | None
    metrics: dict[str, float]
    git_sha: str | None
    loaded_at: datetime
    example: Batch
    local_dir: Path | None = None  # a download of ours, removed when swapped out
    extra: dict[str, Any] = field(default_factory=dict)
    # MLflow's own model object: `/invocations` hands it what our checks cannot prove
    # it would read the same way, so that answer is MLflow's by construction.
    pyfunc: Any = None
    predict_fn: str = "predict"
    fallback_reason: str | None = None  # why `predictor` is pyfunc (None: native)
    # For a boot-file model: the background load the slot runs once it serves.
    complete: Callable[[], None] | None = None
    completed: threading.Event = field(default_factory=threading.Event)
    completion_error: str | None = None

    def full(self) -> LoadedModel:
        """This model once MLflow's model object is loaded (waits for a boot-file model)."""
        self.completed.wait()
        if self.completion_error is not None:
            raise ModelLoadError(f"MLflow's model could not be loaded: {self.completion_error}")
        return self

    def identity(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version}

    def summary(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}

    def dispose(self) -> None:
        if self.local_dir is not None:
            shutil.rmtree(self.local_dir, ignore_errors=True)


def load_model(model_uri: str, settings: ServerSettings) -> LoadedModel:
    """Resolve, download, load, warm up and check; `ModelLoadError`/`ModelCheckError`."""
    download_dir: Path | None = None
    try:
        path, name, version, source, download_dir = _fetch(model_uri, settings)
        model = _load_from_dir(path, model_uri, name, version, source, settings)
    except (ModelLoadError, ModelCheckError):
        if download_dir is not None:
            shutil.rmtree(download_dir, ignore_errors=True)
        raise
    except Exception as exc:
        if download_dir is not None:
            shutil.rmtree(download_dir, ignore_errors=True)
        raise ModelLoadError(f"could not load {model_uri}: {_short(exc)}") from exc
    model.local_dir = download_dir
    return model


def _fetch(
    model_uri: str, settings: ServerSettings
) -> tuple[Path, str | None, str | None, str, Path | None]:
    local = _local_dir(model_uri)
    if local is not None:
        if not (local / "MLmodel").is_file():
            raise ModelLoadError(f"{local} is not an MLflow model directory (no MLmodel file)")
        source = "baked" if (local / BAKED_METADATA_FILE).is_file() else "local"
        return local, settings.model_name, settings.model_version, source, None

    name, version = settings.model_name, settings.model_version
    uri = model_uri
    match = _MODELS_URI.match(model_uri)
    if match:
        name, version = match["name"], match["version"]
    elif model_uri.startswith("models:/"):
        raise ModelLoadError(
            f"unsupported model URI {model_uri!r}: use models:/<name>/<version> or "
            "models:/<name>@<alias>"
        )
    target = Path(tempfile.mkdtemp(prefix="aliasflow-model-"))
    if match and settings.tracking_uri:
        try:
            path, version = registry_rest.download(
                settings.tracking_uri, name or "", version, match["alias"], target
            )
            return path, name, version, "registry", target
        except registry_rest.NotHandledHereError as exc:
            log.debug("downloading %s with MLflow's client (%s)", model_uri, exc)
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
    import mlflow.artifacts

    try:
        if match and match["alias"]:
            version = _resolve_alias(name or "", match["alias"], settings)
            uri = f"models:/{name}/{version}"
        if match:
            # MLflow resolves `models:/` URIs against its process-wide registry URI even
            # when another one is passed; asking our own client for the version's
            # artifact location keeps the server on the tracking URI it was given.
            from mlflow import MlflowClient

            client = MlflowClient(
                tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
            )
            assert name is not None
            assert version is not None
            uri = client.get_model_version_download_uri(name, version)
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=uri,
            dst_path=str(target),
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.tracking_uri,
        )
    except ModelLoadError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ModelLoadError(f"could not download {model_uri}: {_short(exc)}") from exc
    return Path(downloaded), name, version, "registry", target


def _resolve_alias(name: str, alias: str, settings: ServerSettings) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        raise ModelLoadError(f"cannot resolve alias models:/{name}@{alias}: {_short(exc)}") from exc


def _local_dir(model_uri: str) -> Path | None:
    if model_uri.startswith("file://"):
        return Path(model_uri.removeprefix("file://"))
    if "://" in model_uri or model_uri.startswith(("models:", "runs:")):
        return None
    return Path(model_uri)


@dataclass
class _Identity:
    name: str | None
    version: str | None
    run_id: str | None
    metrics: dict[str, float]
    git_sha: str | None
    extra: dict[str, Any]


def _identity(
    path: Path,
    source: str,
    name: str | None,
    version: str | None,
    run_id: str | None,
    settings: ServerSettings,
    *,
    remote: bool,
) -> _Identity:
    """Who the model is: from `aliasflow-model.json` when baked, else the URI and (when
    `remote`) the run's metrics and git sha from MLflow."""
    found = _Identity(name, version, run_id, {}, None, {})
    if source == "baked":
        baked = _read_baked(path)
        found.name = str(baked.get("name") or name or "") or None
        found.version = str(baked["version"]) if baked.get("version") is not None else version
        found.run_id = baked.get("run_id") or run_id
        found.metrics = {k: float(v) for k, v in (baked.get("metrics") or {}).items()}
        found.git_sha = baked.get("git_sha") or baked.get("git_commit")
        found.extra = {k: v for k, v in baked.items() if k not in {"name", "version", "run_id"}}
    elif source == "registry" and run_id and remote:
        found.metrics, found.git_sha = _run_details(run_id, settings)
    return found


def _load_from_dir(
    path: Path,
    model_uri: str,
    name: str | None,
    version: str | None,
    source: str,
    settings: ServerSettings,
    *,
    use_boot: bool = True,
) -> LoadedModel:
    boot = read_boot_file(path) if use_boot else None
    if boot is not None:
        return _boot(path, boot, model_uri, name, version, source, settings)
    from mlflow.models import Model

    mlmodel = Model.load(str(path))
    try:
        spec = spec_from_signature(mlmodel.signature)
    except ValueError as exc:
        raise ModelLoadError(f"{model_uri}: {exc}") from exc
    example = _warm_up_batch(mlmodel, path, spec, settings)
    choice = _make_predictor(mlmodel, path, spec, model_uri, example)
    predictor, spec = choice.predictor, choice.spec

    identity = _identity(path, source, name, version, mlmodel.run_id, settings, remote=True)

    _check(predictor, example, model_uri)
    model = LoadedModel(
        name=identity.name,
        version=identity.version,
        run_id=identity.run_id,
        model_uri=model_uri,
        source=source,
        predictor=predictor,
        spec=spec,
        signature=_signature_json(mlmodel.signature),
        metrics=identity.metrics,
        git_sha=identity.git_sha,
        loaded_at=datetime.now(UTC),
        example=example,
        extra=identity.extra,
        pyfunc=choice.pyfunc,
        predict_fn=choice.predict_fn,
        fallback_reason=choice.fallback_reason,
    )
    model.completed.set()
    return model


def _boot(
    path: Path,
    boot: Boot,
    model_uri: str,
    name: str | None,
    version: str | None,
    source: str,
    settings: ServerSettings,
) -> LoadedModel:
    """Serve from the boot file now; load MLflow's model in the background (`complete`)."""
    spec = boot.spec()
    identity = _identity(path, source, name, version, boot.run_id, settings, remote=False)
    served: list[LoadedModel] = []  # the predictor waits on the model it belongs to
    model = LoadedModel(
        name=identity.name,
        version=identity.version,
        run_id=identity.run_id,
        model_uri=model_uri,
        source=source,
        predictor=BootPredictor(boot, lambda: served[0].full().predictor),
        spec=spec,
        signature=boot.signature,
        metrics=identity.metrics,
        git_sha=identity.git_sha,
        loaded_at=datetime.now(UTC),
        example=Batch(len(boot.example), matrix=boot.example, columns=spec.names),
        extra=identity.extra,
        predict_fn=boot.predict_fn,
    )
    served.append(model)
    _check(model.predictor, model.example, model_uri, extras=False)

    def complete() -> None:
        try:
            full = _load_from_dir(path, model_uri, name, version, source, settings, use_boot=False)
        except Exception as exc:
            model.completion_error = str(exc)
            log.error("%s: MLflow's model did not load behind the boot file: %s", model_uri, exc)
        else:
            if full.predictor.kernel_name != boot.kernel_name:
                log.warning(
                    "%s: the boot file's kernel (%s) no longer applies; serving %s",
                    model_uri,
                    boot.kernel_name,
                    full.predictor.kernel_name or "the estimator",
                )
            model.pyfunc = full.pyfunc
            model.fallback_reason = full.fallback_reason
            model.metrics, model.git_sha = full.metrics, full.git_sha
            model.predictor = full.predictor  # one reference assignment, as a swap
            log.info("%s: MLflow's model loaded behind the boot file", model_uri)
        finally:
            model.completed.set()

    model.complete = complete
    return model


# `pyfunc_predict_fn` values whose method takes only the input (mlflow.sklearn's
# `_SklearnModelWrapper._SUPPORTED_CUSTOM_PREDICT_FN`, less "score", which needs labels).
_NATIVE_PREDICT_FNS = frozenset(
    {"predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba"}
)
# Column types MLflow passes to the estimator as int64/float64 without rounding them,
# so a float64 matrix holds the very same numbers. `float`/`integer` columns are cast to
# 32 bits by MLflow first (different values), `boolean` is not a number to MLflow.
_NATIVE_COLUMN_TYPES = frozenset({"double", "long"})


@dataclass(frozen=True)
class PredictorChoice:
    predictor: Predictor
    spec: InputSpec | None
    pyfunc: Any  # the `mlflow.pyfunc.PyFuncModel`: MLflow's own answer, always at hand
    predict_fn: str
    fallback_reason: str | None  # why the native path is not used (None when it is)


def _make_predictor(
    mlmodel: Any, path: Path, spec: InputSpec | None, model_uri: str, example: Batch
) -> PredictorChoice:
    """Load through pyfunc; serve natively only when that is provably pyfunc's answer."""
    import mlflow.pyfunc

    try:
        pyfunc_model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:
        raise ModelLoadError(f"could not load {model_uri}: {_short(exc)}") from exc
    conf = mlmodel.flavors.get("python_function", {})
    predict_fn = str(conf.get("predict_fn") or "predict")
    reason = _native_blocker(mlmodel, spec, predict_fn)
    if reason is None:
        assert spec is not None
        estimator = pyfunc_model.get_raw_model()
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None and [str(n) for n in fitted] != list(spec.names):
            # MLflow hands sklearn the columns in signature order; a mismatch is the
            # estimator's error to raise (or not), and only pyfunc raises it the same way.
            reason = "the estimator was fitted on other columns or another column order"
        else:
            if fitted is not None:
                # We pass a matrix built by name in that same order: sklearn need not
                # warn that it has no names.
                warnings.filterwarnings(
                    "ignore", message="X does not have valid feature names", category=UserWarning
                )
            steps, described = None, "the example has no numeric matrix"
            if example.matrix is not None:
                steps, described = compile_kernel(estimator, predict_fn, example.matrix)
            log.info("%s: kernel %s", model_uri, described if steps else f"off ({described})")
            native = SklearnPredictor(
                estimator, predict_fn, steps, described if steps is not None else None
            )
            return PredictorChoice(native, spec, pyfunc_model, predict_fn, None)
    log.info("serving %s through mlflow.pyfunc: %s", model_uri, reason)
    return PredictorChoice(
        PyfuncPredictor(pyfunc_model, _pandas_dtypes(spec)), spec, pyfunc_model, predict_fn, reason
    )


def _native_blocker(mlmodel: Any, spec: InputSpec | None, predict_fn: str) -> str | None:
    """Why the native scikit-learn path could answer differently from pyfunc; None if not."""
    if "sklearn" not in mlmodel.flavors:
        flavors = ", ".join(sorted(f for f in mlmodel.flavors if f != "python_function"))
        return f"flavor {flavors or 'python_function'} has no native path"
    if spec is None:
        return "no input signature to check requests against"
    odd = [c.name for c in spec.columns if c.mlflow_type not in _NATIVE_COLUMN_TYPES]
    if odd:
        return f"column(s) {', '.join(odd)} need MLflow's type conversions"
    if predict_fn not in _NATIVE_PREDICT_FNS:
        return f"pyfunc_predict_fn {predict_fn!r}"
    if mlmodel.signature is not None and mlmodel.signature.params is not None:
        return "the signature declares params, which only pyfunc applies"
    return None


def _pandas_dtypes(spec: InputSpec | None) -> dict[str, str]:
    if spec is None:
        return {}
    by_kind = {
        ColumnKind.FLOAT: "float64",
        ColumnKind.INT: "int64",
        ColumnKind.BOOL: "bool",
    }
    dtypes = {}
    for c in spec.columns:
        if c.kind in by_kind:
            dtypes[c.name] = "float32" if c.mlflow_type == "float" else by_kind[c.kind]
            if c.mlflow_type == "integer":
                dtypes[c.name] = "int32"
    return dtypes


def _read_baked(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / BAKED_METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path / BAKED_METADATA_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path / BAKED_METADATA_FILE} must hold a JSON object")
    return data


def _run_details(run_id: str, settings: ServerSettings) -> tuple[dict[str, float], str | None]:
    """Training metrics and git sha from the run; missing ones are not worth a failed load."""
    from mlflow import MlflowClient

    try:
        run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id)
    except Exception as exc:
        log.warning("run %s: could not read metrics (%s)", run_id, _short(exc))
        return {}, None
    tags = run.data.tags
    git_sha = next((tags[t] for t in GIT_SHA_TAGS if tags.get(t)), None)
    return dict(run.data.metrics), git_sha


def _warm_up_batch(
    mlmodel: Any, path: Path, spec: InputSpec | None, settings: ServerSettings
) -> Batch:
    """The model's own input example through our parser; a synthetic row if it has none."""
    example: Any = None
    try:
        example = mlmodel.load_input_example(str(path))
    except Exception as exc:
        log.warning("input example unreadable (%s); warming up on a synthetic row", _short(exc))
    payload: dict[str, Any] | None = None
    if example is not None and hasattr(example, "to_dict") and hasattr(example, "columns"):
        payload = {
            "dataframe_split": {
                "columns": [str(c) for c in example.columns],
                "data": example.to_numpy().tolist(),
            }
        }
    elif isinstance(example, dict):
        payload = {
            "inputs": {k: list(v) if isinstance(v, list) else [v] for k, v in example.items()}
        }
    elif example is not None and spec is None and hasattr(example, "tolist"):
        payload = {"inputs": example.tolist()}
    if payload is None:
        if spec is None:
            raise ModelCheckError(
                "model has neither a signature nor an input example to warm up on"
            )
        synthetic = {
            ColumnKind.FLOAT: 0.0,
            ColumnKind.INT: 0,
            ColumnKind.BOOL: False,
            ColumnKind.STR: "",
            ColumnKind.ANY: "",
        }
        payload = {"records": [{c.name: synthetic[c.kind] for c in spec.columns}]}
    try:
        return parse_payload(payload, spec, settings.max_batch_rows)
    except Exception as exc:
        raise ModelCheckError(
            f"the model's input example does not fit its signature: {exc}"
        ) from exc


def _check(predictor: Predictor, example: Batch, model_uri: str, extras: bool = True) -> None:
    """Warm up and check the output (and the extra outputs, unless a boot-file model's,
    which wait for the estimator: its full load checks them in turn)."""
    for _ in range(3):  # first call pays lazy imports and caches; the rest warm them
        try:
            output = predictor.predict(example)
            check_output(output, example.n_rows)
            if extras:
                for extra in predictor.predict_extras(example, predictor.extras).values():
                    check_output(extra, example.n_rows)
        except OutputError as exc:
            raise ModelCheckError(f"{model_uri} failed its output check: {exc}") from exc
        except Exception as exc:
            raise ModelCheckError(
                f"{model_uri} failed on its input example: {_short(exc)}"
            ) from exc


def _signature_json(signature: Any) -> dict[str, Any] | None:
    """MLflow stores each part as a JSON string; callers want objects."""
    if signature is None:
        return None
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in signature.to_dict().items()}


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return detail[:500]
