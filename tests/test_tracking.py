from dataclasses import dataclass

import pandas as pd
import pytest

from modnas_ops import tracking


@dataclass(frozen=True)
class Cfg:
    epochs: int = 3
    name: str = "x"


class Doubler:
    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": df["x"] * 2.0})


def load_doubler(artifacts: dict) -> Doubler:
    return Doubler()


def test_run_logs_config_and_finishes(mlflow_uri):
    from mlflow.tracking import MlflowClient

    with tracking.start_run("t", Cfg(), experiment="exp") as run:
        tracking.log_metrics({"hv/a": 0.5}, step=1)
        tracking.log_table([{"a": 1, "b": 2}], "fronts/a.csv")
    r = MlflowClient().get_run(run.info.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params == {"epochs": "3", "name": "x"}
    assert r.data.metrics["hv/a"] == 0.5
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "fronts")}
    assert names == {"fronts/a.csv"}


def test_config_does_not_clash_with_params_the_launcher_logged(mlflow_uri, monkeypatch):
    """``mlflow run`` logs MLproject parameters before the script joins the run (empty strings as "''")."""
    import mlflow
    from mlflow.tracking import MlflowClient

    launched = mlflow.start_run()
    mlflow.log_params({"name": "''"})
    mlflow.end_run()
    monkeypatch.setenv("MLFLOW_RUN_ID", launched.info.run_id)
    with tracking.start_run("t", Cfg(name="")) as run:
        pass
    r = MlflowClient().get_run(run.info.run_id)
    assert run.info.run_id == launched.info.run_id and r.info.status == "FINISHED"
    assert r.data.params == {"name": "''", "epochs": "3"}


def test_run_ends_failed_on_error(mlflow_uri):
    from mlflow.tracking import MlflowClient

    with pytest.raises(ValueError), tracking.start_run("t", Cfg()) as run:
        raise ValueError("boom")
    assert MlflowClient().get_run(run.info.run_id).info.status == "FAILED"


def test_library_model_registered_with_alias(mlflow_uri):
    df = pd.DataFrame({"x": [1.0, 2.0]})
    with tracking.start_run("m"):
        _uri, version = tracking.log_library_model(
            "doubler",
            loader="tests.test_tracking:load_doubler",
            artifacts={},
            input_example=df,
            output_example=Doubler().predict(df),
            pip_requirements=["pandas"],
            registered_model_name="doubler",
            alias="candidate",
        )
    assert version == "1"
    model = tracking.load_pyfunc("models:/doubler@candidate")
    assert model.predict(df)["y"].tolist() == [2.0, 4.0]
