"""report.html in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium through the system chromedriver: no browser or driver download).

Opens the 3CX replay's report.html from file://, checks that the graph and the timeline render,
filters the timeline and checks what is shown, clicks a graph node and reads the details panel,
follows an evidence link, and saves a screenshot (``CHAINREPLAY_SCREENSHOTS=DIR`` keeps them).
Skipped only when Chromium or Selenium is missing; .ci/run installs both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHAINREPLAY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHAINREPLAY_CHROMEDRIVER", "/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium / chromedriver not installed", allow_module_level=True)

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from emulator.report import Report  # noqa: E402

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1600,1200",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="chainreplay-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(browser: webdriver.Chrome, page: Path) -> None:
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def _center(browser: webdriver.Chrome, element: object) -> None:
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", element)


def _shown_rows(browser: webdriver.Chrome) -> list[tuple[str, str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    return [(r.get_attribute("data-seq") or "", r.get_attribute("data-kind") or "") for r in rows]


def test_3cx_report_in_chromium(
    browser: webdriver.Chrome, scenario_outdir: Callable[[str], Path], tmp_path: Path
) -> None:
    out = scenario_outdir("3cx")
    _open(browser, out / "report.html")
    assert browser.find_element(By.ID, "outcome").text == "completed"
    assert "3cx" in browser.title
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]

    # The graph: one box per node, drawn with a real size, and the scenario's stages in it.
    nodes = browser.find_elements(By.CSS_SELECTOR, "#graph svg .node")
    assert len(nodes) >= 17
    assert all(n.size["width"] > 20 and n.size["height"] > 10 for n in nodes)
    texts = " ".join(n.text for n in nodes)
    for name in ("ffmpeg.dll", "samcli.dll", "iconic.dll", "d3dcompiler_47.dll", "Chrome\\"):
        assert name in texts
    assert "\\u000a" not in browser.page_source

    # The timeline: first page rendered from the embedded JSON.
    rows = _shown_rows(browser)
    assert len(rows) == 100
    assert "of" in browser.find_element(By.ID, "tl-info").text

    # Filter: only network events, then only stage s3 of them.
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=tl-kind]"):
        if box.get_attribute("value") != "3":  # EVENT_KINDS.index("network")
            box.click()
    rows = _shown_rows(browser)
    assert rows and {kind for _, kind in rows} == {"network"}
    report = Report.from_file(out / "report.json")
    assert [seq for seq, _ in rows] == [str(n.seq) for n in report.network]
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=tl-stage]"):
        if box.get_attribute("value") != "3":  # s3
            box.click()
    assert [seq for seq, _ in _shown_rows(browser)] == [str(n.seq) for n in report.network if n.stage == "s3"]

    # Click the node of stage s3: the details panel shows its origin and evidence links.
    s3 = next(n for n in nodes if n.text.startswith("s3"))
    _center(browser, s3)
    s3.click()
    details = browser.find_element(By.ID, "details")
    assert "iconic.dll" in details.text
    assert "stage3.bin" in details.text
    links = details.find_elements(By.CSS_SELECTOR, "a.ev")
    assert links
    # An evidence link jumps to its event in the timeline (filters widened as needed).
    _center(browser, links[0])
    links[0].click()
    hit = browser.find_element(By.CSS_SELECTOR, "#timeline tr.hit")
    assert hit.get_attribute("data-seq") == links[0].get_attribute("data-seq")

    # An edge is clickable too.
    edge = browser.find_element(By.CSS_SELECTOR, "#graph svg .edge[data-type=exfiltrates_to] text")
    _center(browser, edge)
    edge.click()
    assert "exfiltrates_to" in browser.find_element(By.ID, "details").text

    keep = os.environ.get("CHAINREPLAY_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(folder / "report-top.png"))
    browser.execute_script("document.getElementById('graph').scrollIntoView()")
    assert browser.save_screenshot(str(folder / "report-graph.png"))
    assert (folder / "report-graph.png").stat().st_size > 10_000


def test_100k_event_report_shows_page_one_quickly(
    browser: webdriver.Chrome, scenario_outdir: Callable[[str], Path], tmp_path: Path
) -> None:
    """A 100,000-call trace: the file stays a few megabytes and the first page of the timeline
    shows within seconds, with 100 rows in the DOM, not 100,000."""
    import time

    from emulator.render.html import render_html
    from emulator.render.model import MAX_TIMELINE_API_CALLS
    from emulator.report import ApiCallRecord

    base = Report.model_validate_json((scenario_outdir("winhttp-downloader") / "report.json").read_bytes())
    calls = [
        ApiCallRecord(seq=1000 + i, stage="s1", api="kernel32.WriteFile", args=["0x4", f"n{i:06d}"], ret="0x1")
        for i in range(100_000)
    ]
    report = base.model_copy(update={"api_calls": [*base.api_calls, *calls]})
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    assert page.stat().st_size < 15_000_000
    started = time.perf_counter()
    _open(browser, page)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, elapsed
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")) == 100
    info = browser.find_element(By.ID, "tl-info").text
    assert "page 1 of" in info and str(len(report.api_calls) + 1) not in info
    # The timeline holds the first MAX_TIMELINE_API_CALLS calls and says the rest are in
    # report.json; its last page is reachable by search without building the whole table.
    last_shown = MAX_TIMELINE_API_CALLS - len(base.api_calls) - 1
    assert "after them are in report.json" in browser.find_element(By.ID, "timeline").find_element(By.XPATH, "..").text
    search = browser.find_element(By.ID, "tl-search")
    search.send_keys(f"n{last_shown:06d}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    assert [r.get_attribute("data-seq") for r in rows] == [str(1000 + last_shown)]
    search.clear()
    search.send_keys(f"n{99_999:06d}")
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr[data-seq]") == []
