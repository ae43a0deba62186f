"""The console in a real browser: Debian's headless Chromium, driven by Playwright (pointed at
/usr/bin/chromium; Playwright's own browser download is never used), against the real proxy and
moto. It starts an experiment from a template, shows the live counts of the calls it faults,
and stops it with the button. With FISPROXY_SCREENSHOT_DIR set, it saves the screenshots the
README shows (`docs/console.png`)."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.e2e.test_faults import make_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
TOKEN = "console-test-token"


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def screenshot(page: Any, name: str) -> None:
    out = os.environ.get("FISPROXY_SCREENSHOT_DIR")
    if out:
        page.screenshot(path=str(Path(out) / name), full_page=True)


def test_console_starts_an_experiment_shows_live_counts_and_stops_it(proxy: Fisproxy, browser: Any) -> None:
    fis = proxy.fis()
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    template = fis.create_experiment_template(
        description="Throttle DynamoDB PutItem", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}], tags={"Name": "throttle-putitem"},
        actions={"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                              "parameters": {"service": "dynamodb", "operations": "PutItem",
                                             "percentage": "50", "duration": "PT5M"}}},
    )["experimentTemplate"]["id"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(proxy.control_url + "/")
    page.click(f'[data-template="{template}"] button:has-text("Start")')
    page.wait_for_selector('#detail [data-state="running"]', timeout=20_000)
    experiment_id = page.get_attribute("#experiments tr.chosen", "data-experiment")
    assert experiment_id and fis.get_experiment(id=experiment_id)["experiment"]["experimentTemplateId"] == template

    stop_traffic = threading.Event()

    def traffic() -> None:
        ddb = proxy.client("dynamodb", retries={"mode": "standard", "total_max_attempts": 3})
        i = 0
        while not stop_traffic.is_set():
            try:
                ddb.put_item(TableName=table, Item={"pk": {"S": str(i)}})
            except botocore.exceptions.ClientError:
                pass
            i += 1
            stop_traffic.wait(0.05)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        faulted = '#counts tr[data-operation="dynamodb.PutItem"] td[data-count="faulted"]'
        page.wait_for_function(
            f"() => Number(document.querySelector('{faulted}')?.textContent) >= 10", timeout=60_000)
        requests = int(page.text_content('#counts tr[data-operation="dynamodb.PutItem"] td[data-count="requests"]') or 0)
        assert requests >= int(page.text_content(faulted) or 0) >= 10
        page.wait_for_selector("#detail img.chart", timeout=10_000)
        screenshot(page, "console.png")
    finally:
        stop_traffic.set()
        worker.join(10)
    page.click("#stop")
    wait_for_state(fis, experiment_id, "stopped")
    page.wait_for_selector('#detail h2 [data-state="stopped"]', timeout=10_000)
    assert page.is_disabled("#stop")
    assert not errors, errors


def test_console_is_offline_framed_by_no_one_and_uses_the_control_token(tmp_path: Path, moto: str, browser: Any) -> None:
    with Fisproxy(tmp_path, moto, extra_args=("--control-token", TOKEN)).running() as proxy:
        page_response = proxy.control("GET", "/")
        assert page_response.status_code == 200  # the page holds no data: no token needed
        csp = page_response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
        assert "http" not in page_response.text.replace("http-equiv", "")  # no asset from anywhere else
        assert proxy.control("GET", "/experiments").status_code == 403
        page = browser.new_page()
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((proxy.control_url, "data:", "blob:")) else None)
        page.goto(proxy.control_url + "/")
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)  # refused without the token
        page.fill("#token", TOKEN)
        page.click("#login button")
        page.wait_for_selector("#lever [data-state='disengaged']", timeout=10_000)
        linked = browser.new_page()  # a link with the token works too (a new tab: nothing kept)
        linked.goto(proxy.control_url + "/#token=" + TOKEN)
        linked.wait_for_selector("#lever [data-state='disengaged']", timeout=10_000)
        assert "token" not in linked.url  # taken out of the address bar
        assert outside == []
