"""The live dashboard in real headless Chromium (Debian's package, driven by playwright)."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from streams.offline.demo_data import payments
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import ROOT, create_topics, produce_lines, unique

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def broker(tansu: EmbeddedBroker) -> EmbeddedBroker:
    """The embedded broker only: what this module tests does not depend on the broker."""
    return tansu


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def demo_pipeline(tag: str) -> str:
    text = (ROOT / "config" / "pipelines" / "payments-clean.yaml").read_text()
    text = text.replace("pipeline: payments-clean", f"pipeline: dash-{tag}")
    return text.replace("topic: payments\n", f"topic: pay-{tag}\n")


async def traffic(broker: EmbeddedBroker, topic: str, stop: asyncio.Event) -> None:
    lines = list(payments(100_000, malformed_ratio=0))
    position = 0
    while not stop.is_set():
        await produce_lines(broker, topic, lines[position : position + 100])
        position += 100
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("token", [None, "s3cret"])
async def test_dashboard_is_live_and_shows_dead_letter_reasons(
    broker: EmbeddedBroker, make_worker: Any, tmp_path: Path, token: str | None
) -> None:
    assert CHROMIUM, "Debian's chromium package is required (installed by .ci/run)"
    tag = unique("d")
    await create_topics(broker, f"pay-{tag}")
    worker = make_worker({"dash": demo_pipeline(tag)}, token=token)
    worker.wait_ready()
    stop = asyncio.Event()
    producing = asyncio.create_task(traffic(broker, f"pay-{tag}", stop))
    errors: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            fragment = f"#token={token}" if token else ""
            await page.goto(f"http://127.0.0.1:{worker.web_port}/{fragment}")
            card = page.locator(f"#p-dash-{tag}")
            await card.wait_for(timeout=15_000)
            await page.wait_for_function(
                "document.querySelector('#status').textContent === 'ready'", timeout=15_000
            )
            rate = card.locator('[data-k="rin"]')
            seen = set()
            for _ in range(20):
                seen.add(await rate.text_content())
                await asyncio.sleep(0.5)
            assert len(seen - {"\u2013", "0"}) >= 2, f"the in-rate did not move: {seen}"
            await produce_lines(broker, f"pay-{tag}", [b'{"payment_id": "broken" '])
            reasons = card.locator('[data-k="reasons"]')
            await page.wait_for_function(
                "el => /invalid_json/.test(el.textContent)",
                arg=await reasons.element_handle(),
                timeout=15_000,
            )
            assert re.search(
                r"source/invalid_json: invalid JSON", await reasons.text_content() or ""
            )
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            await browser.close()
    finally:
        stop.set()
        await producing
    assert errors == [], errors
    assert Path(tmp_path / "dashboard.png").stat().st_size > 10_000
    assert worker.stop() == 0
