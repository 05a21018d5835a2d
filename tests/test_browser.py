"""The Dagster UI in a real browser: `relabel ui` over a tiny materialized warehouse (scripted LLM), driven by
Playwright in Debian's headless Chromium. Skipped, with the reason, where chromium or playwright is missing;
CI installs chromium (.ci/run). ``RELABEL_UPDATE_SCREENSHOTS=1`` also writes the README's screenshots to
docs/img/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from relabel.cli import DAGSTER_YAML
from relabel_assets.definitions import build_definitions
from tests.conftest import (
    ASSET_NAMES,
    INCREMENTAL_ASSET_NAMES,
    scripted_resources,
    write_tiny_corpus,
    write_tiny_judgments,
)
from tests.test_cli import free_port, wait_for_webserver

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# flags for a closed network and a root user: no sandbox, no background connections to Google's hosts
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 240
SCREENSHOTS = REPO / "docs" / "img"

if CHROMIUM is None:
    pytest.skip("no chromium on PATH: apt-get install -y chromium (CI's .ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


RUNS_QUERY = """query ($job: String!) { runsOrError(filter: {pipelineName: $job}) {
  ... on Runs { results { runId status runConfigYaml tags { key value } } } } }"""


def wait_for_run(base: str, job: str, *, after: set[str], timeout_s: float = RUN_TIMEOUT_S) -> dict:
    """The first run of ``job`` not in ``after`` once it finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in graphql(base, RUNS_QUERY, {"job": job})["runsOrError"]["results"] if r["runId"] not in after]
        if runs and runs[-1]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return runs[-1]
        time.sleep(2)
    raise AssertionError(f"no finished {job} run after {timeout_s} s")


def run_ids(base: str, job: str) -> set[str]:
    return {r["runId"] for r in graphql(base, RUNS_QUERY, {"job": job})["runsOrError"]["results"]}


class UI:
    """The running `relabel ui`: its address, the test folder and the log."""

    def __init__(self, base: str, root: Path, log: Path) -> None:
        self.base, self.root, self.log = base, root, log

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """The full pipeline materialized once into a Dagster instance (so the UI has materializations, check results
    and plots), then `relabel ui` over it with the test code location (scripted LLM, sensors stopped)."""
    root = tmp_path_factory.mktemp("ui")
    corpus = write_tiny_corpus(root / "corpus")
    write_tiny_judgments(root / "judgments", corpus)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(scripted_resources(root, corpus, root / "judgments", student_epochs=1))
        assert defs.resolve_job_def("relabel_job").execute_in_process(instance=instance).success
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RELABEL_TEST_ROOT": str(root),
        "RELABEL_SENSOR_INTERVAL_S": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = root / "ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "relabel.cli", "ui", "--port", str(port), "--module", "tests.ui_defs"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_webserver(port, process, timeout_s=240)
            yield UI(f"http://127.0.0.1:{port}", root, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui: UI) -> Iterator[object]:
    """A fresh page at 1600x1000 with Dagster's community pop-up already dismissed."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=ui.base)
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str, tmp_path: Path) -> None:
    """Into the test's folder, and into docs/img when RELABEL_UPDATE_SCREENSHOTS=1."""
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    if os.environ.get("RELABEL_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_lineage_graph_lists_every_asset_in_its_stage_group(page, tmp_path: Path) -> None:
    page.goto("/asset-groups")
    page.locator("[data-tooltip='labeling']").first.wait_for()  # the graph of (collapsed) stage groups
    page.mouse.click(1000, 300, button="right")  # the graph's context menu
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.get_by_text("seed_corpus", exact=True).wait_for()
    page.get_by_text("agreement_report", exact=True).wait_for()
    arrows = page.locator("button:has([aria-label='arrow_drop_down'])")  # the sidebar's groups
    for index in reversed(range(arrows.count())):
        arrows.nth(index).click()
    page.locator("[class*=MiddleTruncate_container][title='relevance_labels']").wait_for()
    names = set(page.eval_on_selector_all("[class*=MiddleTruncate_container]", "els => els.map(e => e.title)"))
    groups = {"corpus", "synthesis", "retrieval", "labeling", "judgments", "training", "student", "evaluation"}
    assert ASSET_NAMES | INCREMENTAL_ASSET_NAMES <= names
    assert names - ASSET_NAMES - INCREMENTAL_ASSET_NAMES == groups | {"incremental"}
    page.get_by_role("button", name="panel_show_right", exact=True).click()  # hide the sidebar
    page.get_by_role("button", name="Hide navigation").click()
    page.wait_for_timeout(1000)
    screenshot(page, "lineage", tmp_path)


def test_asset_checks_show_their_result(page) -> None:
    page.goto("/assets/teacher_labels?view=checks")
    page.get_by_text("Checks (4)").wait_for()
    for check in ("unique_label", "grades_in_range", "grade_distribution_not_degenerate"):
        page.get_by_text(check, exact=True).first.wait_for(state="attached")
    assert page.get_by_text("Succeeded").count() == 4
    page.get_by_text("Evaluation result").wait_for()
    assert page.get_by_text("Passed", exact=True).count() >= 1


def test_agreement_report_renders_a_plot_image(page, tmp_path: Path) -> None:
    page.goto("/assets/agreement_report?view=events")
    for figure in ("teacher_kappa", "student_kappa", "student_teacher_kappa"):
        page.locator("tr", has_text=figure).first.wait_for()
    page.locator("tr", has_text="confusion_matrices").get_by_text("[Show Markdown]").click()
    image = page.locator("img[src^='data:image/png']").first
    image.wait_for(state="visible")
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 300 and height > 100, "the PNG decoded"
    screenshot(page, "report", tmp_path)


def test_launchpad_config_picks_another_teacher_and_the_run_records_it(page, ui: UI) -> None:
    before = run_ids(ui.base, "__ASSET_JOB")
    page.goto("/assets/teacher_labels")
    materialize = page.locator("button:has-text('Materialize')").first
    materialize.locator("xpath=ancestor::span[1]/following-sibling::span[1]//button").click()
    page.get_by_role("menuitem", name="Open launchpad").click()
    page.locator(".CodeMirror").wait_for()
    page.get_by_text("No errors").wait_for()
    # the launchpad's YAML editor (CodeMirror): the run config for teacher_labels
    page.evaluate(
        """() => { const editor = document.querySelector('.CodeMirror').CodeMirror;
        editor.setValue(editor.getValue().replace(/^ops: \\{\\}$/m,
            'execution:\\n  config:\\n    in_process: {}\\n'
            + 'ops:\\n  teacher_labels:\\n    config:\\n      model: scripted/second-opinion')); }"""
    )
    page.get_by_text("No errors").wait_for()
    page.get_by_role("dialog").locator("button:has-text('Materialize')").last.click()
    page.wait_for_url("**/runs/**")
    run = wait_for_run(ui.base, "__ASSET_JOB", after=before)
    assert run["status"] == "SUCCESS", ui.tail()
    assert "model: scripted/second-opinion" in run["runConfigYaml"]

    page.goto("/assets/teacher_labels?view=events")
    row = page.locator("tr", has_text="teacher_model").first
    row.wait_for()
    assert "scripted/second-opinion" in row.inner_text()
    with duckdb.connect(str(ui.root / "data" / "relabel.duckdb"), read_only=True) as conn:
        rows = conn.execute("select distinct model, run_id from teacher_labels").fetchall()
    assert rows == [("scripted/second-opinion", run["runId"])]


def test_turning_the_inbox_sensor_on_relabels_a_dropped_file(page, ui: UI) -> None:
    before = run_ids(ui.base, "incremental_relabel_job")
    page.goto("/locations/tests.ui_defs/sensors/inbox_sensor")
    switch = page.locator("input[type=checkbox]").first
    switch.wait_for(state="attached")
    assert not switch.is_checked(), "the test code location starts its sensors stopped"
    page.locator("label", has=switch).click()
    page.wait_for_function("() => document.querySelector('input[type=checkbox]').checked")
    inbox = ui.root / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "badge.md").write_text(
        "---\ntitle: Office badge replacement\nauthor: Facilities\nmodified: 2026-01-05\ntype: faq\n---\n"
        "Lost your office badge? Reception prints a replacement badge."
    )
    run = wait_for_run(ui.base, "incremental_relabel_job", after=before)
    assert run["status"] == "SUCCESS", ui.tail()
    page.goto("/runs")
    row = page.locator("[class*=VirtualizedTable_row]", has_text=run["runId"][:8]).first
    row.get_by_text("incremental_relabel_job").first.wait_for()
    row.get_by_text("Success").wait_for()
    page.goto("/assets/relevance_labels?view=partitions")
    page.get_by_text(run_tag(run, "dagster/partition")).first.wait_for()


def run_tag(run: dict, key: str) -> str:
    return {t["key"]: t["value"] for t in run["tags"]}[key]
