"""The registered models served over REST: ``mlflow models serve -m models:/...@alias --env-manager local`` on
127.0.0.1, real HTTP requests (what a device team's client sends), and clear 4xx answers to malformed ones."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.servers import free_port, running

pytestmark = pytest.mark.slow  # each server takes ~10 s to start


@contextlib.contextmanager
def served(model_uri: str, log: Path) -> Iterator[str]:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1 (this environment, no conda / virtualenv)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(cmd, log, f"{url}/ping", env=os.environ.copy()):
        yield url


def post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def registered(mlflow_uri: str) -> dict:
    """A generator and one chosen ONNX subnet, registered with alias ``candidate`` as a search registers them."""
    from modnas_ops import tracking
    from modnas_ops.predictor.model import MetaPredictor
    from modnas_ops.registration import log_generator, register_architectures
    from modnas_ops.spaces import get_search_space
    from profiling.export import export_onnx
    from tests.test_generator import _generator

    space = get_search_space("nb201")
    torch.manual_seed(0)
    gen = _generator(predictor=MetaPredictor("nb201", hidden=16, layers=2).eval())  # a class a server can load
    arch = space.to_string((3, 1, 2, 4, 0, 3))
    torch.manual_seed(0)
    supernet = space.build_supernet((1, 8, 8), C=4, N=1, num_classes=3).eval()
    import pandas as pd

    rows = pd.DataFrame([{"device": "dev-a", "arch": arch, "pref_0": 0.5, "pref_1": 0.5, "error": 10.0,
                          "latency_ms": 2.0}])  # fmt: skip
    with tracking.start_run("serve-test"):
        log_generator(gen, registered_model_name="modnas-generator", alias="candidate")
        register_architectures(rows, "nb201", {"C": 4, "N": 1, "num_classes": 3}, export_fn=export_onnx,
                               input_shape=(2, 1, 8, 8), supernet=supernet)  # fmt: skip
    return {"generator": gen, "space": space, "supernet": supernet, "arch": arch}


def test_served_generator_answers_architectures_and_refuses_malformed_requests(registered, tmp_path) -> None:
    gen, space = registered["generator"], registered["space"]
    anchors = {f"anchor_latency_ms_{i}": 0.5 + 0.1 * i for i in range(10)}
    good = {**anchors, "pref_0": 0.3, "pref_1": 0.7}
    with served("models:/modnas-generator@candidate", tmp_path / "serve.log") as url:
        status, body = post(url, {"dataframe_records": [good, {**good, "pref_0": 0.9, "pref_1": 0.1}]})
        assert status == 200, body
        (first, second) = body["predictions"]
        space.from_string(first["arch"])  # a canonical architecture of the space
        assert first["pred_latency_ms"] > 0 and "pred_error" in first
        import pandas as pd

        local = gen.predict(pd.DataFrame([good, {**good, "pref_0": 0.9, "pref_1": 0.1}]))
        assert [first["arch"], second["arch"]] == list(local["arch"])  # the server answers as the library does
        status, body = post(url, {"dataframe_records": [{**good, "top_k": 3}]})
        assert status == 200 and len(body["predictions"]) == 3, body

        nine = {k: v for k, v in good.items() if k != "anchor_latency_ms_9"}
        cases = {
            "missing column": ({k: v for k, v in good.items() if k != "pref_1"}, "pref_1"),
            "9 anchors": (nine, "anchor_latency_ms_9"),
            "negative latency": ({**good, "anchor_latency_ms_3": -1.0}, "must be finite, positive"),
            "preferences not summing to 1": ({**good, "pref_0": 0.6}, "sum to 1"),
        }
        for what, (record, needle) in cases.items():
            status, body = post(url, {"dataframe_records": [record]})
            assert 400 <= status < 500, (what, status, body)
            assert needle in body["message"], (what, body)
            assert "Traceback" not in body["message"], what
        status, body = post(url, {"no_such_key": []})
        assert 400 <= status < 500, body


def test_served_onnx_subnet_answers_logits(registered, tmp_path) -> None:
    space, supernet, arch = registered["space"], registered["supernet"], registered["arch"]
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with served("models:/modnas-architectures@candidate-dev-a", tmp_path / "serve.log") as url:
        status, body = post(url, {"inputs": x.tolist()})
    assert status == 200, body
    (logits,) = body["predictions"].values()  # {ONNX output name: (2, classes)}
    logits = np.asarray(logits, dtype=np.float32)
    with torch.inference_mode():
        want = supernet.subnet(space.from_string(arch))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
