"""Review: the MLflow UI server on the ci study's store (the real workflow, run once per
session). Through MLflow's REST API: the experiment, the parent/child hierarchy, params,
metrics, artifacts and the logged policies; in Debian's headless chromium (driven by
Selenium): the experiment page lists every run by name, and the artifact view plays an
evaluation video. Screenshots are saved."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import requests

from support import need
from support.services import free_port

SECRET = "s3cr3t-T0KEN"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
)


class UiVerb:
    """`python -m rl ui` (what `make ui` runs) on the ci study's store, started in its own
    session as from a terminal; it answers /health before it prints its ready line, which
    can take ~30 s or more on 2 cores."""

    def __init__(self, workdir, cfg: dict, port: int, log):
        self.workdir, self.cfg, self.port, self.log = workdir, cfg, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.proc: subprocess.Popen | None = None

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "rl", "ui", "--config", "results/ci/config.yaml",
                "--port", str(port)]  # fmt: skip

    def start(self, timeout: float = 240) -> None:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.command(self.port), cwd=self.workdir, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "MLflow UI on" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"MLflow UI did not come up:\n{self.log.read_text()[-4000:]}")
            time.sleep(1)
        assert requests.get(f"{self.base}/health", timeout=10).status_code == 200

    def processes(self) -> list[psutil.Process]:
        """What the verb started: mlflow ui, its uvicorn server, job runner and consumers."""
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self) -> None:
        """SIGTERM to the verb alone; what it leaves behind is killed, so that one failed
        test does not leave a server running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        left = self.processes()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()


@pytest.fixture(scope="module")
def ui(ci_study, tmp_path_factory):
    workdir, cfg, _ = ci_study
    verb = UiVerb(workdir, cfg, free_port(), tmp_path_factory.mktemp("mlflow-ui") / "ui.log")
    try:
        verb.start()
        yield verb
    finally:
        verb.stop()


@pytest.fixture(scope="module")
def server(ui):
    return ui.base, ui.workdir, ui.cfg


def api(base: str, endpoint: str, method: str = "GET", **kwargs) -> dict:
    resp = requests.request(method, f"{base}/api/2.0/mlflow/{endpoint}", timeout=60, **kwargs)
    assert resp.status_code == 200, resp.text[:2000]
    return resp.json()


@pytest.fixture(scope="module")
def runs(server):
    base, _, _ = server
    exp = api(base, "experiments/get-by-name", params={"experiment_name": "ci"})["experiment"]
    found = api(
        base,
        "runs/search",
        "POST",
        json={"experiment_ids": [exp["experiment_id"]], "max_results": 1000},
    )["runs"]
    for run in found:
        run["tags"] = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        run["params"] = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    return exp, found


def test_rest_api_shows_experiment_hierarchy_params_metrics(server, runs):
    base, _, cfg = server
    exp, found = runs
    by_id = {r["info"]["run_id"]: r for r in found}
    parents = {r["info"]["run_name"]: r for r in found if r["tags"]["rl.kind"] != "stage"}
    seeds = cfg["seeds"]
    assert set(parents) == {"ci-all-seeds"} | {f"default-seed{s}" for s in seeds}
    stages = [r for r in found if r["tags"]["rl.kind"] == "stage"]
    names = sorted(r["info"]["run_name"] for r in stages)
    per_seed_stages = (
        "obs_norm_stats",
        "train_ppo",
        "evaluate_ppo",
        "train_pendulum",
        "animate_pendulum",
    )
    assert names == sorted(
        [f"{st}-seed{s}" for st in per_seed_stages for s in seeds]
        + ["aggregate", "plot", "aggregate_pendulum", "plot_pendulum"]
    )
    n_batches = cfg["ppo"]["total_frames"] // cfg["ppo"]["frames_per_batch"]
    for run in stages:
        parent = by_id[run["tags"]["mlflow.parentRunId"]]
        seed = run["tags"]["rl.seed"]
        assert parent["info"]["run_name"] == (f"default-seed{seed}" if seed else "ci-all-seeds")
        assert run["info"]["status"] == "FINISHED"
        assert run["params"]["ppo.clip_epsilon"] == "0.2"
        for tag in ("rl.git_commit", "rl.config_hash", "rl.device", "rl.snakemake_rule"):
            assert run["tags"][tag]
        if run["tags"]["rl.stage"] == "train_ppo":
            history = api(
                base,
                "metrics/get-history",
                params={"run_id": run["info"]["run_id"], "metric_key": "train_reward_mean"},
            )["metrics"]
            assert sorted(int(m["step"]) for m in history) == [
                cfg["ppo"]["frames_per_batch"] * (i + 1) for i in range(n_batches)
            ]


def test_rest_api_serves_artifacts_and_models(server, runs):
    base, _, _ = server
    exp, found = runs
    by_stage = {}
    for run in found:
        by_stage.setdefault(run["tags"].get("rl.stage"), []).append(run)
    (plot,) = by_stage["plot"]
    listing = api(base, "artifacts/list", params={"run_id": plot["info"]["run_id"]})
    assert {"ppo.png", "ppo.pdf", "provenance.json", "config"} <= {
        f["path"] for f in listing["files"]
    }
    png = requests.get(
        f"{base}/get-artifact",
        timeout=60,
        params={"path": "ppo.png", "run_uuid": plot["info"]["run_id"]},
    )
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    models = api(
        base, "logged-models/search", "POST", json={"experiment_ids": [exp["experiment_id"]]}
    )["models"]
    sources = {m["info"]["source_run_id"] for m in models}
    assert sources == {r["info"]["run_id"] for r in by_stage["train_ppo"]}


def test_sync_to_the_server_finds_everything_there_and_leaks_no_token(server, runs):
    """Pushing the study to a server that already holds it adds nothing; the credentials
    in the URI appear nowhere in what the verb prints."""
    base, workdir, _ = server
    _, before = runs
    uri = base.replace("http://", f"http://reviewer:{SECRET}@")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl",
            "mlflow-sync",
            "--config",
            "results/ci/config.yaml",
            "--to",
            uri,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "0 runs created, 0 completed" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "http://***@127.0.0.1" in proc.stderr
    exp_id = before[0]["info"]["experiment_id"]
    after = api(base, "runs/search", "POST", json={"experiment_ids": [exp_id], "max_results": 1000})
    assert len(after["runs"]) == len(before)


def _link(ui: UiVerb, page: str) -> str:
    """A page the verb names in its ready message ('  <page>...: <url>')."""
    for line in ui.log.read_text().splitlines():
        if line.startswith(f"  {page}"):
            return line.split(": ", 1)[1]
    raise AssertionError(f"the UI named no '{page}' page:\n{ui.log.read_text()[-3000:]}")


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _driver(tmp_path):
    found = _chromium()
    need(found, "chromium or chromedriver is missing", "apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = found[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(found[1]), options=options)


def test_browser_finds_every_run_by_name(ui, server, runs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, _ = server
    exp, all_runs = runs
    expected = {r["info"]["run_name"] for r in all_runs}
    driver = _driver(tmp_path)
    shot = tmp_path / "mlflow-experiment.png"
    try:
        driver.set_page_load_timeout(120)
        driver.get(_link(ui, "the study's runs"))
        expander = 'button[data-component-id*="runnamecellrenderer"]'
        n_parents = sum(1 for r in all_runs if r["tags"]["rl.kind"] != "stage")
        wait = WebDriverWait(driver, 180, poll_frequency=1)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, expander)) >= n_parents)
        for i in range(n_parents):  # open every parent: its child runs appear below it
            driver.find_elements(By.CSS_SELECTOR, expander)[i].click()

        def names(d):
            return {a.text for a in d.find_elements(By.CSS_SELECTOR, 'a[href*="/runs/"]')}

        try:
            wait.until(lambda d: expected <= names(d))
            assert "/runs" in driver.current_url  # the training runs, not the GenAI overview
        finally:
            driver.save_screenshot(str(shot))
            print(f"\nscreenshot: {shot}")
    finally:
        driver.quit()
    assert shot.stat().st_size > 10_000


def test_browser_compares_the_parent_runs_at_a_glance(ui, runs, tmp_path):
    """The verb's comparison page: every parent run side by side with the params that tell
    them apart and the headline metrics; one parent's values are in the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, all_runs = runs
    parents = [r for r in all_runs if r["tags"]["rl.kind"] != "stage"]
    seed0 = next(r for r in parents if r["info"]["run_name"] == "default-seed0")
    driver = _driver(tmp_path)
    shot = tmp_path / "mlflow-compare.png"
    try:
        driver.set_page_load_timeout(120)
        driver.get(_link(ui, "its seeds and variants side by side"))
        wait = WebDriverWait(driver, 180, poll_frequency=1)

        def text(d):
            return d.find_element(By.TAG_NAME, "body").text

        try:
            wait.until(lambda d: "final_eval_return_min" in text(d))
            page = text(driver)
        finally:
            driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert f"Comparing {len(parents)} Runs" in page
    for name in [r["info"]["run_name"] for r in parents]:
        assert name in page
    columns = ["variant", "seed", "env_id", "config_hash", "final_eval_return_mean"]
    columns += ["final_eval_return_min", "eval_return.iqm"]  # the first rows of its metrics
    for column in columns:
        assert column in page, column
    params = {p["key"]: p["value"] for p in seed0["data"]["params"]}
    assert params["config_hash"] in page and params["env_id"] in page
    shown = [float(x) for x in re.findall(r"-?\d+\.\d+", page.split("\nMetrics", 1)[1])]
    value = next(
        m["value"] for m in seed0["data"]["metrics"] if m["key"] == "final_eval_return_mean"
    )
    assert any(abs(x - value) <= 1e-3 * max(1.0, abs(value)) for x in shown), (value, shown)


def test_browser_plays_a_video_artifact(server, runs, tmp_path):
    """MLflow's artifact view previews an MP4 in a <video> element (MLflow 3's UI does):
    the first evaluation episode of seed 0 loads in Chromium, with its real duration."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, workdir, _ = server
    exp, all_runs = runs
    (run,) = [
        r
        for r in all_runs
        if r["tags"].get("rl.stage") == "evaluate_ppo" and r["tags"]["rl.seed"] == "0"
    ]
    manifest = workdir / "results" / "ci" / "default" / "seed0" / "eval" / "videos.json"
    first = json.loads(manifest.read_text())["videos"]["first"]
    run_id = run["info"]["run_id"]
    driver = _driver(tmp_path)
    shot = tmp_path / "mlflow-video.png"
    state = (
        "const v = document.querySelector('video');"
        "return v ? {src: v.currentSrc, ready: v.readyState, duration: v.duration,"
        " error: v.error && v.error.code, width: v.videoWidth} : null;"
    )
    try:
        driver.set_page_load_timeout(120)
        driver.get(
            f"{base}/#/experiments/{exp['experiment_id']}/runs/{run_id}/artifacts/episode-first.mp4"
        )
        wait = WebDriverWait(driver, 180, poll_frequency=1)
        try:
            wait.until(lambda d: d.find_elements(By.TAG_NAME, "video"))
            video = wait.until(
                lambda d: (v := d.execute_script(state)) and (v["duration"] or 0) > 0 and v
            )
        finally:
            driver.save_screenshot(str(shot))
            print(f"\nscreenshot: {shot}")
    finally:
        driver.quit()
    assert video["error"] is None and video["ready"] >= 1
    assert video["width"] == first["width"]
    assert video["duration"] == pytest.approx(first["frames"] / first["fps"], abs=0.06)


def test_a_second_ui_on_the_same_port_names_the_holder_and_the_fix(ui):
    """Found before anything starts: one paragraph naming the port, the program that holds
    it (the first UI's mlflow) and --port."""
    proc = subprocess.run(
        ui.command(ui.port), cwd=ui.workdir, env=ui.env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: Port {ui.port} on 127.0.0.1 is held by `"), error
    assert "mlflow" in error and "--port <free port>" in error, error


def test_sigterm_to_the_verb_stops_every_process_it_started_and_frees_the_port(ui):
    """Last in the module: it stops the UI. SIGTERM to the verb alone (a `kill`, `timeout`,
    a scheduler) ends mlflow ui and everything it started, and the verb exits 0."""
    started = ui.processes()
    assert len(started) >= 2, started  # mlflow ui and at least its uvicorn server
    groups = {os.getpgid(p.pid) for p in started}
    t0 = time.monotonic()
    ui.proc.send_signal(signal.SIGTERM)
    assert ui.proc.wait(timeout=60) == 0, ui.log.read_text()[-2000:]
    seconds = time.monotonic() - t0
    left = [  # a zombie holds nothing; it waits for init, which in a container may not reap
        p
        for p in psutil.process_iter(["status"])
        if _pgid(p.pid) in groups and p.info["status"] != psutil.STATUS_ZOMBIE
    ]
    assert not left, [(p.pid, p.cmdline()) for p in left]
    assert seconds < 20, seconds
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", ui.port))  # the port is free again


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
