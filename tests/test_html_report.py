"""The HTML report: self-contained, and rendered by a real headless Chromium with no console error."""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import select
import shutil
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import build_lake, report_lake_events

from trailsight.report.daily import write_daily_report
from trailsight.report.html import calls_per_hour_svg

DAY = date(2024, 3, 10)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    lake = build_lake(folder, report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)))
    write_daily_report(lake, DAY, folder / "out")
    return folder / "out"


def test_page_is_self_contained(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text()
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "Content-Security-Policy" in page
    for chart in ("calls-per-hour", "top-callers", "failure-families", "spike"):
        assert f'data-chart="{chart}"' in page


def test_text_from_the_lake_is_escaped() -> None:
    svg = calls_per_hour_svg([{"hour": h, "calls": 1, "reads": 1, "writes": 0, "failed": 0} for h in range(24)])
    assert svg.count("<rect") == 48
    from trailsight.report.html import hbar_svg

    assert "<script>" not in hbar_svg("x", "label", [("<script>alert(1)</script>", 1, "#000")])


def _high_fd(fd: int) -> int:
    """The same pipe end above fd 4, close-on-exec, so wiring it to 3 and 4 in the child cannot collide."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """The DevTools protocol over Chromium's pipe (fd 3 in, fd 4 out): no port, no extra package."""

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = map(_high_fd, os.pipe())
        self._from_browser, from_browser_w = map(_high_fd, os.pipe())

        def wire() -> None:  # in the child: dup2 leaves fds 3 and 4 open across exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


CHARTS_JS = """JSON.stringify({
  title: document.title,
  charts: [...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    return {name: svg.dataset.chart, width: box.width, height: box.height,
            rects: svg.querySelectorAll('rect').length, lines: svg.querySelectorAll('polyline').length,
            band: svg.querySelectorAll('rect.baseline-band').length};
  }),
  bodyHeight: document.body.scrollHeight
})"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package `chromium`)")
def test_report_renders_in_headless_chromium_without_errors(report_dir: Path, tmp_path: Path) -> None:
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        url = (report_dir / "report.html").as_uri()
        browser.call("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        result = browser.call("Runtime.evaluate", {"expression": CHARTS_JS, "returnByValue": True},
                              session=session)
        page = json.loads(result["result"]["value"])
    finally:
        browser.close()

    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u == url or u.startswith("data:") for u in requests), requests

    assert page["title"] == "CloudTrail daily report 2024-03-10"
    charts = {c["name"]: c for c in page["charts"]}
    assert set(charts) == {"calls-per-hour", "top-callers", "failure-families", "spike", "trend-events",
                           "trend-failed", "trend-findings"}
    for chart in page["charts"]:
        assert chart["width"] > (200 if chart["name"].startswith("trend-") else 300) and chart["height"] > 20, chart
    assert charts["calls-per-hour"]["rects"] == 48 and charts["calls-per-hour"]["lines"] == 1
    assert charts["spike"]["lines"] == 1 and charts["spike"]["band"] == 1
    assert page["bodyHeight"] > 1500


LAYOUT_JS = """JSON.stringify({
  viewport: innerWidth,
  pageWidth: document.documentElement.scrollWidth,
  cardTops: [...document.querySelectorAll('.card')].map(c => Math.round(c.getBoundingClientRect().top)),
  bandHeights: [...document.querySelectorAll('rect.baseline-band')].map(r => r.getBoundingClientRect().height),
  trendBars: [...document.querySelectorAll('svg[data-chart^="trend-"]')].map(s => s.querySelectorAll('rect').length),
  accountCells: [...document.querySelectorAll('#breakdown td:first-child')].map(
    td => Math.round(td.getBoundingClientRect().height)),
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id)
})"""


def page_layout(page: Path, width: int, profile: Path, screenshot: Path) -> dict[str, Any]:
    """The page's layout at a viewport width (mobile emulation below 600 px), and a screenshot of its top."""
    import base64

    browser = DevTools(profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": width < 600}, session=session)
        browser.call("Page.navigate", {"url": page.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        layout = json.loads(browser.call("Runtime.evaluate", {"expression": LAYOUT_JS, "returnByValue": True},
                                         session=session)["result"]["value"])
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    return layout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package `chromium`)")
@pytest.mark.parametrize("width", [1400, 390])
def test_page_reads_at_desktop_and_phone_width(report_dir: Path, tmp_path: Path, width: int) -> None:
    layout = page_layout(report_dir / "report.html", width, tmp_path / "profile", tmp_path / f"page-{width}.png")
    assert layout["viewport"] == width and layout["pageWidth"] <= width  # wide tables and charts scroll inside
    if width == 1400:
        assert len(set(layout["cardTops"])) == 1 and len(layout["cardTops"]) == 8  # the headline is one row
    assert layout["bandHeights"] and min(layout["bandHeights"]) >= 5  # a quiet baseline is still seen
    assert layout["trendBars"] == [7, 7, 1]  # findings: only the report's own day is recorded in this lake
    assert layout["accountCells"] and max(layout["accountCells"]) < 40  # an account ID never wraps
    assert layout["sections"][:3] == ["trend", "activity", "breakdown"]
    assert (tmp_path / f"page-{width}.png").stat().st_size > 10_000


def test_each_finding_links_a_query_that_returns_its_events(report_dir: Path) -> None:
    from trailsight.query.duckdb_engine import run_sql

    page = (report_dir / "report.html").read_text()
    security = json.loads((report_dir / "security.json").read_text())
    urgent = [f for f in security["findings"] if f["severity"] in ("critical", "high")]
    commands = [html.unescape(c) for c in re.findall(r'<pre class="query">(.*?)</pre>', page)]
    assert urgent and len(commands) >= len(urgent)
    lake, sql = re.match(r'trailsight sql --lake (\S+) --format line "(.*)"$', commands[0]).groups()
    rows = run_sql(lake, sql).rows
    assert sorted(r[1] for r in rows) == sorted(e["eventName"] for e in urgent[0]["events"])


def test_trend_shows_findings_the_daily_job_recorded_for_earlier_days(report_dir: Path, tmp_path: Path) -> None:
    from trailsight.lake.layout import mark_day_complete

    lake = report_dir.parent / "lake"
    mark_day_complete(lake, date(2024, 3, 9), {"report": {"findings": {"high": 2, "low": 3}}})
    write_daily_report(lake, DAY, tmp_path)
    trend = json.loads((tmp_path / "summary.json").read_text())["trend"]
    assert [t["day"] for t in trend] == [f"2024-03-{d:02d}" for d in range(4, 11)]
    today = sum(json.loads((tmp_path / "security.json").read_text())["by_severity"].values())
    assert [t["findings"] for t in trend][-2:] == [5, today] and trend[0]["findings"] is None
    assert trend[-1]["events"] == 48 + 180 + 1 + 3 + 1


def test_signatures_not_checked_are_not_shown_as_zero_of_zero(report_dir: Path, tmp_path: Path) -> None:
    lake = report_dir.parent / "lake"
    (tmp_path / "empty-archive").mkdir()
    write_daily_report(lake, DAY, tmp_path / "out", source=tmp_path / "empty-archive")
    tmp_path = tmp_path / "out"
    page = (tmp_path / "report.html").read_text()
    assert "signatures: not checked (no CloudTrail public keys given)" in page and "0 of 0 valid" not in page
