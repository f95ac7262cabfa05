"""The MLflow UI as a person sees it: a real ``mlflow server`` on 127.0.0.1 with a fresh store, two small real
searches logged to it, and Debian's headless Chromium (driven by Playwright, no browser download) on the run
page, the ``hv/<device>`` charts, a front PNG in the artifact viewer, report.html, the compare view of the two
searches and the registered generator with its alias. Screenshots go to ``$MODNAS_UI_SCREENSHOTS`` (default
``outputs/ui-shots``), kept as the test's artifacts."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, running

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
SHOTS = Path(os.environ.get("MODNAS_UI_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "outputs" / "ui-shots")
DEVICES = ("cpu-ort-t1-b1", "cpu-ort-t1-b32")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a fresh sqlite store with proxied artifacts, bound to 127.0.0.1."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    root = tmp_path_factory.mktemp("ui-store")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    url = f"http://127.0.0.1:{port}"
    with running(cmd, root / "server.log", f"{url}/health", env=env, cwd=root):
        yield url


@pytest.fixture(scope="module")
def searches(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny real searches (seeds 0 and 1) on a real profile of this machine, logged to the server."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from profiling.campaign import run_campaign
    from profiling.config import CampaignConfig
    from projects import search
    from tests.test_search_entry import TINY

    root = tmp_path_factory.mktemp("ui-searches")
    profile = root / "profile.csv"
    run_campaign(CampaignConfig(devices=DEVICES, num_archs=10, rounds=3, repeats=2, energy=False,
                                add_cuda_devices=False, output=str(profile)))  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server)
        mp.setenv("MLFLOW_REGISTRY_URI", server)
        for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(var, raising=False)
        mlflow.set_tracking_uri(server)
        mlflow.set_registry_uri(server)
        try:
            for seed in (0, 1):
                argv = ["--profile-table", str(profile), *TINY, "--set", "plots=true", "--set", f"search.seed={seed}",
                        "--set", f"run_name=search-seed{seed}", "--set", f"output_dir={root / f'out{seed}'}",
                        "--set", f"search.checkpoint_dir={root / f'ck{seed}'}"]  # fmt: skip
                assert search.main(argv) == 0
            client = MlflowClient(server)
            exp = client.get_experiment_by_name("search")
            runs = {r.info.run_name: r.info.run_id for r in client.search_runs(exp.experiment_id)}
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    return {"url": server, "experiment": exp.experiment_id, **runs}


@pytest.fixture(scope="module")
def page(searches: dict[str, str]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _open(page, searches: dict[str, str], route: str, shot: str, *texts: str) -> None:
    """Load ``#<route>`` afresh (a hash change alone keeps the previous artifact selected), wait until every
    text shows, save a screenshot."""
    page.goto("about:blank")
    page.goto(f"{searches['url']}/#{route}")
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(state="visible")
    page.screenshot(path=str(SHOTS / f"{shot}.png"))


def test_run_page_shows_description_dataset_and_tags(page, searches) -> None:
    run = searches["search-seed0"]
    _open(page, searches, f"/experiments/{searches['experiment']}/runs/{run}", "run",
          "search-seed0", "MODNAS search, supernet mode", "digits", "search.mode")  # fmt: skip
    body = page.inner_text("body")
    assert "Finished" in body and "modnas-architectures" in body  # status and the registered models


def test_hv_metrics_group_into_one_chart_section(page, searches) -> None:
    run = searches["search-seed0"]
    _open(page, searches, f"/experiments/{searches['experiment']}/runs/{run}/model-metrics", "metrics",
          *(f"hv/{d}" for d in DEVICES), "Step")  # fmt: skip ("Step": a chart's x axis, drawn)
    body = page.inner_text("body")
    assert "hv\n(2)" in body  # the hv/<device> metrics grouped under "hv", one chart per device


def test_artifact_view_shows_a_front_png_and_the_report(page, searches) -> None:
    run = searches["search-seed0"]
    base = f"/experiments/{searches['experiment']}/runs/{run}/artifacts"
    _open(page, searches, f"{base}/fronts/{DEVICES[0]}.png", "front", f"fronts/{DEVICES[0]}.png")
    page.wait_for_function("() => [...document.images].some((i) => i.complete && i.naturalWidth >= 400)")  # decoded
    _open(page, searches, f"{base}/report.html", "report", "report.html")
    report = page.frame_locator("iframe").first  # the viewer renders the HTML artifact in a sandboxed frame
    report.get_by_text("Hypervolume per device").wait_for(state="visible")
    assert all(d in report.locator("body").inner_text() for d in DEVICES)
    page.screenshot(path=str(SHOTS / "report.png"))


def test_compare_view_of_two_searches(page, searches) -> None:
    runs = f'["{searches["search-seed0"]}","{searches["search-seed1"]}"]'
    _open(page, searches, f"/compare-runs?runs={runs}&experiments=[\"{searches['experiment']}\"]", "compare",
          "Comparing 2 Runs", "search-seed0", "search-seed1")  # fmt: skip
    assert "search.seed" in page.inner_text("body")  # the differing param is readable


def test_registered_generator_with_alias_and_description(page, searches) -> None:
    _open(page, searches, "/models/modnas-generator", "model", "modnas-generator", "candidate",
          "MODNAS hypernetwork")  # fmt: skip
    body = page.inner_text("body")
    assert "Version 2" in body  # one version per search
