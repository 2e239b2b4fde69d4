"""The Temporal web UI, opened in Debian's Chromium, shows a run as its flow.

A dev server with its UI (as `meta-agent dev` starts it) and a worker; a run of a
stored flow parks on a review. The browser finds the run by its `FlowName`
search attribute, and its page shows the review the run waits for (current
details) and the node labels (activity and timer summaries) in its history.
Screenshots are kept in TEST_ARTIFACTS (default: `.test-artifacts/` of the checkout).

Skipped when Chromium or its driver is not installed (`scripts/test.sh` installs them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.registry import Dependencies
from persistence import queries
from tests.flows import FlowWorker
from tests.hitl_support import People, decide, fetched_then_reviewed, open_task
from tests.http_peer import HttpPeer, Reply
from tests.invariant import assert_queue_tells_the_truth
from workers.client import start_run
from workers.processes import free_port
from workers.settings import Settings
from workers.temporal_client import connect
from workers.temporal_dev import TemporalDevServer
from workers.worker import build_worker
from workflows.contract import FlowRunInput

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver"
)
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / ".test-artifacts")
)


@pytest.fixture
async def ui_stack(
    tmp_path: Path, session_maker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[TemporalDevServer, FlowWorker]]:
    """A dev server with its web UI, and a worker on it."""
    server = TemporalDevServer(tmp_path / "temporal", port=free_port(), ui_port=free_port())
    server.start()
    try:
        client = await connect(server.address, "default")
        queue = f"ui-{uuid.uuid4().hex[:8]}"
        deps = Dependencies(sessions=session_maker)
        settings = Settings(temporal_task_queue=queue, reconcile_interval_seconds=1)
        async with build_worker(client, settings, deps):
            worker = FlowWorker(client, queue, session_maker)
            yield server, worker
            await assert_queue_tells_the_truth(client, session_maker, queue, worker.started)
        await deps.aclose()
    finally:
        server.stop()


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1600,2400")
    return webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)


def _until(check: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


async def test_the_ui_finds_a_run_by_flow_name_and_shows_its_labels_and_its_wait(
    ui_stack: tuple[TemporalDevServer, FlowWorker], people: People, http_peer: HttpPeer
) -> None:
    server, worker = ui_stack
    http_peer.route("GET", "/orders/9", Reply(200, {"id": 9}))
    definition = fetched_then_reviewed(
        f"{http_peer.base}/orders/9", "Fetch the order", "Let it settle"
    )
    name = f"browser-flow-{uuid.uuid4().hex[:6]}"
    async with worker.sessions() as s, s.begin():
        stored = await queries.save_workflow_version(
            s, name=name, definition=definition, tenant_id=uuid.UUID(people.tenant)
        )
    params = FlowRunInput(
        workflow_id=str(stored.workflow_id), inputs={"what": "order 9"}, tenant_id=people.tenant
    )
    handle = await start_run(
        worker.client,
        worker.task_queue,
        params,
        run_id=f"ui-{uuid.uuid4().hex[:8]}",
        flow_name=name,
    )
    worker.started.append(handle.id)
    (task,) = await open_task(handle)

    # The browser blocks: it runs in a thread, so this loop's worker answers the UI's queries.
    await asyncio.to_thread(_browse, server.ui_url, name, handle.id)
    await decide(handle, task["id"], {"approved": True}, people.finance)
    await handle.result()


def _browse(ui_url: str, flow_name: str, run_id: str) -> None:
    """What an operator does: find the run by flow name, read its wait, then its history."""
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = _browser()
    try:
        browser.get(f'{ui_url}/namespaces/default/workflows?query=FlowName="{flow_name}"')
        assert _until(lambda: run_id in browser.page_source), "the run is not listed"
        browser.save_screenshot(str(ARTIFACTS / "ui-runs-by-flow-name.png"))

        browser.get(f"{ui_url}/namespaces/default/workflows/{run_id}")
        tab = "//*[normalize-space(text())='User Metadata']"
        assert _until(lambda: bool(browser.find_elements(By.XPATH, tab))), "no metadata tab"
        browser.find_element(By.XPATH, tab).click()

        def body() -> str:
            """The page's text, with that of its frames (the UI renders Markdown in one each)."""
            texts = [str(browser.find_element(By.TAG_NAME, "body").text)]
            for frame in browser.find_elements(By.TAG_NAME, "iframe"):
                browser.switch_to.frame(frame)
                texts.append(str(browser.find_element(By.TAG_NAME, "body").text))
                browser.switch_to.default_content()
            return "\n".join(texts)

        assert _until(lambda: "meta-agent hitl decide" in body()), "no review in the details"
        text = body()
        assert flow_name in text  # the summary, and the current details' first line
        assert "Review order 9" in text
        assert "(role finance)" in text
        browser.save_screenshot(str(ARTIFACTS / "ui-run-waiting-for-review.png"))

        browser.find_element(
            By.XPATH, "//*[starts-with(normalize-space(.), 'Event History')]"
        ).click()
        assert _until(lambda: "Fetch the order" in body()), "no activity label"
        assert _until(lambda: "Let it settle" in body()), "no timer label"
        browser.save_screenshot(str(ARTIFACTS / "ui-run-history-labels.png"))
    except AssertionError:
        browser.save_screenshot(str(ARTIFACTS / "ui-failure.png"))
        (ARTIFACTS / "ui-failure.txt").write_text(browser.page_source)
        raise
    finally:
        browser.quit()
