"""``mlp report``'s pages in a real browser: headless Chromium (driven by Selenium) opens each
page from disk, as a person opening the file or a mail attachment would. The console must
stay free of errors, every image must have loaded (decoded, with a width), the page must run
no script, and nothing may have been fetched but the page's own inline data.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (skipped with a message naming
them where they are missing, a failure in CI, as is a missing selenium).

``MLPCLI_SCREENSHOT=1 pytest tests/test_report_browser.py`` also saves the top of a run's
page to docs/images/report.png (the README's screenshot).
"""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import headless_chromium, quick_run, save_screenshot

from mlpcli.cli import main

pytest.importorskip("selenium.webdriver")
# below the importorskip, so that a missing selenium is a skip (a failure in CI), not an error
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "report.png"
WAIT_S = 30


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium((1100, 1500))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A run (configs/quick.yaml, 2,000 MNIST images, 4 epochs) and a 2-trial sweep of it."""
    root = tmp_path_factory.mktemp("report-browser")
    trained = quick_run(root / "quick-mnist", samples=2000, epochs=4)
    swept = CliRunner().invoke(main, ["sweep", "configs/quick.yaml", "--grid", "training.batch_size=32,64",
                                      "--set", "data.max_train_samples=300", "--set", "training.epochs=3",
                                      "--runs-root", str(root / "sweeps"), "--no-plots", "-q"])
    assert swept.exit_code == 0, swept.output
    return {"run": trained, "sweep": (root / "sweeps" / "latest").resolve()}


def opened(driver, page):
    """Open ``page`` (a file) and check what every page must satisfy; the images' alt texts."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(page.as_uri())
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert images, "the page shows no image"
    unloaded = [alt for alt, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert unloaded == [], f"images that did not load: {unloaded}"
    assert driver.execute_script("return document.scripts.length") == 0
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [name for name in fetched if not name.startswith("data:")] == []
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], f"the browser console shows errors: {errors}"
    return [alt for alt, *_ in images]


@pytest.mark.parametrize("kind, least", [("run", 8), ("sweep", 2)])
def test_a_page_opened_from_disk_shows_every_image_and_no_console_error(browser, folders, kind, least, tmp_path):
    page = tmp_path / f"{kind}.html"
    result = CliRunner().invoke(main, ["report", str(folders[kind]), "--out", str(page)])
    assert result.exit_code == 0, result.output
    shown = opened(browser, page)
    assert len(shown) >= least
    headings = [h.text for h in browser.find_elements("css selector", "h2")]
    assert headings[0] == ("Diagnostics" if kind == "run" else "Trials ranked")
    if kind == "run" and os.environ.get("MLPCLI_SCREENSHOT") == "1":
        save_screenshot(browser, SCREENSHOT)
