"""MLflow tracking: the only module of the library that imports mlflow.

Runs end FAILED on any exception, KILLED on Ctrl-C or SIGTERM, never stuck RUNNING (a run a kill -9 left RUNNING is
closed by the rerun that resumes its checkpoint, :func:`adopt_orphan`); configs are logged whole (flattened
params + ``config.yaml``); tables go out as CSV artifacts; models are logged with explicit signatures and pip
requirements and registered with aliases (stages are deprecated in MLflow 3).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import config_to_dict, flatten_config
from .errors import Terminated

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
LOADER_KEY = "loader"  # artifact of a library pyfunc: the "module:function" that builds the model
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`~modnas_ops.errors.Terminated` in the main thread (so ``finally``
    blocks and :func:`start_run` close the run KILLED); the previous handler is restored after. A no-op off the
    main thread (only it may set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def start_run(
    run_name: str,
    config: Any = None,
    experiment: str | None = None,
    tags: Mapping[str, str] | None = None,
    nested: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under ``mlflow run``, join) a run; log ``config`` whole; end FINISHED, FAILED on error, KILLED
    on Ctrl-C or SIGTERM (handled while the run is open, see :func:`sigterm_raises`).

    Inside ``mlflow run`` the environment names the run (``MLFLOW_RUN_ID``) and ``mlflow.start_run`` resumes it.
    """
    if experiment and not nested and "MLFLOW_RUN_ID" not in os.environ:
        mlflow.set_experiment(experiment)
    with sigterm_raises():
        run = mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags or {}))
        client = MlflowClient()
        if EXPERIMENT_KIND_TAG not in client.get_experiment(run.info.experiment_id).tags:
            # the UI then lays the experiment out for model training, not GenAI (also under ``mlflow run``)
            client.set_experiment_tag(run.info.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")
        try:
            if config is not None:
                log_config(config)
            yield run
        except KeyboardInterrupt:  # Ctrl-C and SIGTERM (Terminated)
            mlflow.end_run(status="KILLED")
            raise
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")


def adopt_orphan(run_id: str, history: Sequence[Mapping[str, float]]) -> str:
    """Take over from the run ``run_id`` whose search checkpoint the active run resumes: a run still RUNNING
    (its process was killed with -9) is closed KILLED, and ``history`` (the checkpoint's per-epoch metrics, step
    = their ``epoch``) is logged into the active run so its metric history is whole. Tags link the two runs.
    Returns the old run's status ("" where this store does not know it)."""
    from mlflow.entities import Metric

    active = active_run_id()
    client = MlflowClient()
    status = ""
    if run_id and run_id != active:
        try:
            status = client.get_run(run_id).info.status
        except MlflowException:
            log.warning("resumed checkpoint names run %s, which this tracking store does not know", run_id)
        if status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
            log.info("closed the orphaned run %s (left RUNNING by a killed search) as KILLED", run_id)
            status = "KILLED"
        if status:
            client.set_tag(run_id, "resumed_by_run_id", active)
        mlflow.set_tag("resumed_from_run_id", run_id)
    if run_id == active:  # the same run continues: its metrics are there already
        return status
    stamp = int(time.time() * 1000)
    points = [
        Metric(k, float(v), stamp, int(m.get("epoch", i)))
        for i, m in enumerate(history)
        for k, v in m.items()
        if v is not None
    ]
    for i in range(0, len(points), 1000):
        client.log_batch(active, metrics=points[i : i + 1000])
    return status


def run_exists(run_id: str) -> bool:
    """Whether the tracking store knows the run ``run_id``."""
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def active_run_id() -> str:
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run")
    return run.info.run_id


def log_config(config: Any) -> None:
    """All fields as params (``a.b``) plus the whole config as ``config.yaml``.

    Under ``mlflow run`` the launcher has already logged the MLproject parameters (an empty string as ``''``);
    params are immutable, so keys the run already has are left as they are (``config.yaml`` holds every value).
    """
    existing = MlflowClient().get_run(active_run_id()).data.params
    params = {k: v[:MAX_PARAM_CHARS] for k, v in flatten_config(config).items() if k not in existing}
    items = list(params.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i : i + 100]))
    mlflow.log_dict(config_to_dict(config), "config.yaml")


def log_params(params: Mapping[str, Any]) -> None:
    mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """One batched call (``log_metric`` costs ~11 ms each on sqlite)."""
    clean = {k: float(v) for k, v in metrics.items() if v is not None}
    if clean:
        mlflow.log_metrics(clean, step=step)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_table(table: Any, artifact_file: str) -> None:
    """A pandas DataFrame or a list of row dicts as a CSV artifact at ``artifact_file``."""
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        df.to_csv(path, index=False)
        parent = str(Path(artifact_file).parent)
        mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)


def log_figure(fig: Any, artifact_file: str) -> None:
    mlflow.log_figure(fig, artifact_file)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_dict(d: Mapping[str, Any], artifact_file: str) -> None:
    mlflow.log_dict(dict(d), artifact_file)


def dataset_source(source: str | Path | Mapping[str, str]) -> Any:
    """An MLflow dataset source: a local file or folder (a path), or the code that generates the data (a
    mapping of tags, e.g. ``{"mlflow.source.name": "modnas_ops.data:patterns"}``). Built directly, so MLflow
    does not guess between its (twice registered) local sources and warn."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    if isinstance(source, Mapping):
        return CodeDatasetSource(tags={str(k): str(v) for k, v in source.items()})
    import json

    return get_dataset_source_from_json(json.dumps({"uri": str(Path(source).resolve())}), source_type="local")


def log_dataset(df: Any, name: str, source: str | Path | Mapping[str, str], context: str = "training") -> None:
    """Log a pandas table as an MLflow dataset input of the active run (schema and profile from ``df``)."""
    import mlflow.data

    with _quiet_mlflow_internals():
        dataset = mlflow.data.from_pandas(df, source=dataset_source(source), name=name)
    mlflow.log_input(dataset, context=context)


def log_dataset_reference(
    name: str, source: str | Path | Mapping[str, str], digest: str, context: str = "training",
    tags: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """Log a dataset input of the active run by reference only (name, source, content digest; no copy and no
    schema: for image tensors, token streams and large benchmark tables). ``tags`` describe it (split sizes,
    shapes) and show beside the input in the UI."""
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(dataset_source(source), name=name, digest=digest[:36])  # MLflow keeps <= 36 chars
    mlflow.log_input(dataset, context=context, tags={k: str(v) for k, v in (tags or {}).items()})


def set_description(text: str) -> None:
    """The active run's description (markdown; the UI shows it on the run page and in run lists)."""
    mlflow.set_tag("mlflow.note.content", text)


# ---- models and registry ----------------------------------------------------------------------


class LibraryPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around a library object built by a loader ("module:function", the ``loader`` artifact).

    ``loader(artifacts: dict[str, str])`` returns an object with ``predict(pandas.DataFrame) -> DataFrame``;
    the library itself never imports mlflow. Logged from code (``modnas_ops/pyfunc_model.py``), not pickled.
    """

    def __init__(self) -> None:
        self._model: Any = None

    def load_context(self, context: Any) -> None:
        module, _, fn = Path(context.artifacts[LOADER_KEY]).read_text().strip().partition(":")
        self._model = getattr(importlib.import_module(module), fn)(dict(context.artifacts))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # a DataFrame hint: MLflow infers no schema from it and validates against the logged signature instead
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from .errors import UserError

        try:
            return self._model.predict(model_input)
        except UserError as e:  # bad input: HTTP 400 with our message when served, not "unexpected error"
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None


def _package_dir() -> str:
    return str(Path(__file__).resolve().parent)


@contextlib.contextmanager
def _quiet_mlflow_internals() -> Iterator[None]:
    """Two warnings MLflow 3.17 raises on any logged model with a DataFrame example, neither about our data:
    its own ``df.columns == range(...)`` comparison (pandas' Pandas4Warning, mlflow/models/utils.py) and the
    hint that integer columns cannot hold missing values (ours, ``nb201_index`` / ``rank`` / ``top_k``, never
    do). Every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Operation with range is deprecated")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def log_library_model(
    name: str,
    loader: str,
    artifacts: Mapping[str, str],
    input_example: Any,
    output_example: Any,
    pip_requirements: Sequence[str],
    registered_model_name: str | None = None,
    alias: str | None = None,
    tags: Mapping[str, Any] | None = None,
    optional_inputs: Mapping[str, str] | None = None,
    description: str | None = None,
    model_description: str | None = None,
) -> tuple[str, str | None]:
    """Log a :class:`LibraryPyfunc` (code of ``modnas_ops`` included); optionally register + alias it.
    ``optional_inputs``: {column: MLflow type} the signature accepts beside the example's columns.

    Returns (model_uri, registered version or None).
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    with _quiet_mlflow_internals():
        signature = infer_signature(input_example, output_example)
    if optional_inputs:
        extra = [ColSpec(kind, name, required=False) for name, kind in optional_inputs.items()]
        signature = ModelSignature(Schema([*signature.inputs.inputs, *extra]), signature.outputs)
    tmp = tempfile.TemporaryDirectory()
    loader_file = Path(tmp.name) / "loader.txt"
    loader_file.write_text(loader)
    with tmp, _quiet_mlflow_internals():
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).resolve().parent / "pyfunc_model.py"),
            artifacts={**artifacts, LOADER_KEY: str(loader_file)},
            code_paths=[_package_dir()],
            signature=signature,
            input_example=input_example,
            pip_requirements=list(pip_requirements),
        )
    version = None
    if registered_model_name:
        version = register(info.model_uri, registered_model_name, alias=alias, tags=tags, description=description,
                           model_description=model_description)
    return info.model_uri, version


def log_onnx_model(
    name: str,
    onnx_model: Any,
    input_example: Any,
    output_example: Any,
    registered_model_name: str | None = None,
    alias: str | None = None,
    tags: Mapping[str, Any] | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    description: str | None = None,
    model_description: str | None = None,
) -> tuple[str, str | None]:
    """Log an ``onnx.ModelProto`` (built by ``profiling/``) as an MLflow ONNX model; optionally register it."""
    import mlflow.onnx
    from mlflow.models import infer_signature

    with _quiet_mlflow_internals():
        info = mlflow.onnx.log_model(
            onnx_model,
            name=name,
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=["onnxruntime", "onnx"],
            onnx_execution_providers=list(providers),
            save_as_external_data=False,
        )
    version = None
    if registered_model_name:
        version = register(info.model_uri, registered_model_name, alias=alias, tags=tags, description=description,
                           model_description=model_description)
    return info.model_uri, version


def register(
    model_uri: str, name: str, alias: str | None = None, tags: Mapping[str, Any] | None = None,
    description: str | None = None, model_description: str | None = None,
) -> str:  # fmt: skip
    """Register ``model_uri`` under ``name``; tag and describe the version, point ``alias`` at it, and describe
    the registered model itself (``model_description``; the UI's model page). Returns the version."""
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in (tags or {}).items()})
    client = MlflowClient()
    if description:
        client.update_model_version(name, mv.version, description=description)
    if model_description:
        client.update_registered_model(name, description=model_description)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def load_pyfunc(model_uri: str) -> Any:
    return mlflow.pyfunc.load_model(model_uri)


def get_run_metrics(run_id: str) -> dict[str, float]:
    """Latest value of every metric of a run."""
    return dict(MlflowClient().get_run(run_id).data.metrics)


def download_artifacts(run_id: str, artifact_path: str, dst: str | Path | None = None) -> str:
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst)


def log_metric_series(
    key: str, values: Sequence[float], steps: Sequence[int], run_id: str | None = None
) -> None:
    """A metric's whole series (e.g. ``hv`` with step = evaluations) in batched calls of <= 1000 points,
    to ``run_id`` or the active run (appended by the baselines helper)."""
    from mlflow.entities import Metric

    rid = run_id or active_run_id()
    stamp = int(time.time() * 1000)
    points = [Metric(key, float(v), stamp, int(s)) for v, s in zip(values, steps, strict=True)]
    client = MlflowClient()
    for i in range(0, len(points), 1000):
        client.log_batch(rid, metrics=points[i : i + 1000])
