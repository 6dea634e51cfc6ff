"""The search page in a real headless browser (Debian's chromium + chromedriver, driven by
selenium): load it, search by an indexed image (click) and by an uploaded image file, check the
first hit is the query image at distance 0 and that every thumbnail loaded.

A screenshot is written to ``$ODH_SCREENSHOT_DIR`` (default: the test's ``tmp_path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing the Debian packages if needed."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        subprocess.run(
            ["bash", str(ROOT / "infra/scripts/ensure-chromium.sh")], check=False, timeout=900
        )
        found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        pytest.skip(
            "Debian chromium/chromium-driver are not installed and could not be installed "
            "(infra/scripts/ensure-chromium.sh needs apt-get and root)"
        )
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("selenium", reason="selenium is a dev dependency (pip install -e .[dev])")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, script: str, timeout: float = 60.0) -> Any:
    """Poll a JS expression until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(f"return {script};")
    )


def _results(driver: Any) -> list[tuple[int, int]]:
    return [
        (int(li.get_attribute("data-id")), int(li.get_attribute("data-distance")))
        for li in driver.find_elements("css selector", "#grid li.hit")
    ]


def _wait_for_thumbnails(driver: Any) -> int:
    """Every result thumbnail finished loading with real pixels; returns how many."""
    _wait(
        driver,
        "Array.from(document.querySelectorAll('#grid img'))"
        ".every(i => i.complete && i.naturalWidth > 0)",
    )
    widths = driver.execute_script(
        "return Array.from(document.querySelectorAll('#grid img')).map(i => i.naturalWidth);"
    )
    assert widths and all(w == 28 for w in widths), widths
    return len(widths)


def _first_hit_oracle(codes: np.ndarray, ids: np.ndarray, row: int) -> int:
    """Brute force: the smallest id among the rows whose code equals row ``row``'s (ties at
    distance 0 are ordered by id)."""
    same = np.all(codes == codes[row], axis=1)
    return int(ids[same].min())


def test_search_page_finds_the_query_image(
    browser: Any, page_server: str, page_index: Any, tmp_path: Path
) -> None:
    driver = browser
    driver.get(page_server + "/")
    assert driver.title.startswith("ODH index")
    _wait(driver, "document.body.dataset.state === 'ready'")
    facts = driver.find_element("id", "facts").text
    assert f"{len(page_index.ids)} images" in facts and "32-bit" in facts, facts
    examples = driver.find_elements("css selector", "#examples button")
    assert len(examples) == 8
    _wait(
        driver,
        "Array.from(document.querySelectorAll('#examples img'))"
        ".every(i => i.complete && i.naturalWidth > 0)",
    )

    # 1. Click a random indexed image: the first hit is it (or the smallest id sharing its code).
    clicked = int(examples[0].get_attribute("data-id"))
    row = int(np.flatnonzero(page_index.ids == clicked)[0])
    driver.find_element("id", "k").clear()
    driver.find_element("id", "k").send_keys("12")
    # every list (nlist 4): the recorded default nprobe may probe lists holding < 12 codes
    driver.find_element("id", "nprobe").clear()
    driver.find_element("id", "nprobe").send_keys("4")
    examples[0].click()
    _wait(driver, "document.body.dataset.state === 'done'")
    hits = _results(driver)
    assert len(hits) == 12
    assert hits[0] == (_first_hit_oracle(page_index.codes, page_index.ids, row), 0)
    assert (clicked, 0) in hits
    assert _wait_for_thumbnails(driver) == 12
    label = driver.find_element("css selector", "#grid li.hit .label").text
    first_row = int(np.flatnonzero(page_index.ids == hits[0][0])[0])
    assert label == ("ring", "bar", "cross", "dot")[page_index.labels[first_row]]

    # 2. Upload a database image's file: encoded by the query encoder, the same code → distance 0.
    unique = [
        r
        for r in range(len(page_index.ids))
        if np.all(page_index.codes == page_index.codes[r], axis=1).sum() == 1
    ]
    assert unique, "the fixture should hold at least one image with a unique code"
    pick = unique[len(unique) // 2]
    image_file = tmp_path / "query.png"
    image_file.write_bytes(page_index.images[pick])
    driver.find_element("id", "file").send_keys(str(image_file))
    _wait(
        driver,
        "document.body.dataset.state === 'done' && "
        f"document.querySelector('#grid li.hit').dataset.id === '{int(page_index.ids[pick])}'",
    )
    hits = _results(driver)
    assert hits[0] == (int(page_index.ids[pick]), 0)
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    assert _wait_for_thumbnails(driver) == 12
    status = driver.find_element("id", "status").text
    assert "12 nearest images in" in status and "Serve hops" in status, status
    assert not driver.find_element("id", "partial").is_displayed()
    assert not driver.find_element("id", "error").is_displayed()

    shots = Path(os.environ.get("ODH_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "search-page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_unknown_image_id_is_a_json_404(page_server: str) -> None:
    import httpx

    resp = httpx.get(f"{page_server}/v1/images/999999", timeout=30)
    assert resp.status_code == 404 and "999999" in resp.json()["detail"]
