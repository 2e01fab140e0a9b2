"""The page of ``mlp serve`` in a real browser: headless Chromium, driven by Selenium, against a
real ``mlp serve`` process on 127.0.0.1.

A digit is drawn on the page's canvas with pointer events (press, moves, release) as a person
would with a mouse; the answer the page shows must be the one ``mlp predict`` gives for the
very pixels on the canvas (taken from it as a PNG), and, the model being a good one, the digit
that was drawn. The upload button must answer for an image file, and the browser console must
stay free of errors throughout.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (skipped with a message naming
them where they are missing, a failure in CI, as is a missing optional import).

``MLPCLI_SCREENSHOT=1 pytest tests/test_serve_browser.py`` also saves the page, with a drawn
digit and its answer, to docs/images/serve-page.png (the README's screenshot).
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import headless_chromium, quick_run, save_screenshot
from PIL import Image

from mlpcli.predict import predict

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium.webdriver")
# below the importorskip, so that a missing selenium is a skip (a failure in CI), not an error
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve-page.png"
PAD = 280  # the canvas's side in CSS pixels (the contract)
SERVER_START_S = 60
WAIT_S = 30
MOVE_MS = 60  # each pointer move takes this long, so the page sees a drawing, not jumps

# Strokes in canvas pixels, as a person draws them: one press, moves, one release each.
STROKES = {
    "1": [[(140, 40), (140, 90), (140, 140), (140, 190), (140, 240)]],
    "7": [[(80, 50), (140, 50), (200, 50), (175, 110), (150, 170), (125, 240)]],
    "0": [[(140, 40), (190, 70), (205, 140), (190, 210), (140, 240), (90, 210), (75, 140), (90, 70),
           (140, 40)]],
}


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    """configs/quick.yaml on 6,000 MNIST images for 2 epochs (about 95% right, a few seconds):
    good enough that a clearly drawn digit is read as that digit."""
    return quick_run(tmp_path_factory.mktemp("serve-browser") / "run", samples=6000, epochs=2)


@pytest.fixture(scope="module")
def server(digit_run, tmp_path_factory):
    yield from serving(digit_run, tmp_path_factory)


@pytest.fixture(scope="module")
def table_server(csv_run, tmp_path_factory):
    yield from serving(csv_run, tmp_path_factory)


def serving(run_dir, tmp_path_factory):
    """A real ``mlp serve RUN --port 0`` process: its base URL, read from its first line. Its
    output is drained all along (a server that logs every request must never block on a pipe)."""
    errors = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
    with open(errors, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "serve", str(run_dir), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines, first = [], threading.Event()

    def drain():
        for line in proc.stdout:
            lines.append(line)
            first.set()
        first.set()

    threading.Thread(target=drain, daemon=True).start()
    first.wait(SERVER_START_S)
    try:
        found = re.search(r" on (http://\S+)", lines[0]) if lines else None
        if found is None:
            proc.kill()
            proc.wait(WAIT_S)
            pytest.fail(f"mlp serve did not say where it serves within {SERVER_START_S} s; "
                        f"stdout: {lines!r}; stderr: {errors.read_text()}")
        yield found.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium((900, 800))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The page freshly opened and ready (``body[data-ready="1"]``); the console is checked
    for errors when the test is done."""
    yield from opened(browser, server)


@pytest.fixture
def table_page(browser, table_server):
    yield from opened(browser, table_server)


def opened(browser, url):
    browser.get_log("browser")  # drop what an earlier test left
    browser.get(url + "/")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'body[data-ready="1"]'))
    yield browser
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], f"the browser console shows errors: {errors}"


# ------------------------------------------------------------------ helpers

def answers(driver):
    return int(driver.execute_script("return document.body.dataset.answers || '0'"))


def settled_answer(driver, before):
    """The page's answer once it has shown more than ``before`` answers and no new one for
    a moment (drawing sends a request every ~150 ms; the last one, on release, counts)."""
    WebDriverWait(driver, WAIT_S).until(lambda d: answers(d) > before)
    count, since = answers(driver), time.monotonic()
    while time.monotonic() - since < 1.0 or pending(driver):  # the page shows the newest request's answer
        time.sleep(0.1)
        now = answers(driver)
        if now != count:
            count, since = now, time.monotonic()
    return driver.find_element(By.ID, "answer").text.strip()


def pending(driver):
    return int(driver.execute_script("return document.body.dataset.pending || '0'"))


def draw(driver, strokes):
    """Each stroke as one pointer press, moves through its points (canvas pixels), release."""
    pad = driver.find_element(By.ID, "pad")
    actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"), duration=MOVE_MS)
    pointer = actions.pointer_action
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        pointer.move_to(pad, x - PAD // 2, y - PAD // 2).pointer_down()
        for x, y in rest:
            pointer.move_to(pad, x - PAD // 2, y - PAD // 2)
        pointer.pointer_up()
    actions.perform()


def canvas_png(driver, path):
    """The canvas's pixels as the PNG file ``path``."""
    url = driver.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    return path


def predicted(run_dir, path):
    """What ``mlp predict PATH --json`` says: (class, [(class, probability), ...])."""
    lines = []
    predict([str(path)], run_dir=run_dir, as_json=True, emit=lines.append, top_k=3)
    answer = json.loads(lines[0])
    return answer["class"], [(t["class"], t["probability"]) for t in answer["top_k"]]


def shown_top(driver):
    """The page's top list as [(class, percent), ...] from items like ``7 — 98.1%``."""
    items = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#top li")]
    found = [re.fullmatch(r"\s*(.+?)\s+—\s+([\d.]+)\s*%\s*", text) for text in items]
    assert all(found), f"top list items not like '7 — 98.1%': {items}"
    return [(m.group(1), float(m.group(2))) for m in found]


def check_shown(driver, run_dir, path):
    """The page's answer and top list are ``mlp predict``'s for ``path``; the answer."""
    label, top = predicted(run_dir, path)
    assert driver.find_element(By.ID, "answer").text.strip() == label
    shown = shown_top(driver)
    assert [c for c, _ in shown] == [c for c, _ in top]
    assert np.allclose([p for _, p in shown], [100 * p for _, p in top], atol=0.051)
    return label


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_a_digit_drawn_with_pointer_events_gets_mlp_predicts_answer(page, digit_run, digit, tmp_path):
    before = answers(page)
    draw(page, STROKES[digit])
    shown = settled_answer(page, before)
    assert shown == check_shown(page, digit_run, canvas_png(page, tmp_path / "drawn.png"))
    assert shown == digit, f"a clearly drawn {digit} was read as {shown}"
    if digit == "7" and os.environ.get("MLPCLI_SCREENSHOT") == "1":
        save_screenshot(page, SCREENSHOT)


def test_clear_blanks_the_pad(page):
    draw(page, STROKES["1"])
    page.find_element(By.ID, "clear").click()
    lit = page.execute_script(
        "const pad = document.getElementById('pad');"
        "const px = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;"
        "let lit = 0; for (let i = 0; i < px.length; i += 4) lit += px[i] + px[i + 1] + px[i + 2];"
        "return lit;")
    assert lit == 0


def test_an_uploaded_image_file_gets_mlp_predicts_answer(page, digit_run, tmp_path):
    from mlpcli.data import load_dataset

    data = load_dataset({"dataset": "mnist"}, scale=False)
    digit, label = data.x_test[0].reshape(28, 28), str(int(data.y_test[0]))
    path = tmp_path / "digit.png"
    Image.fromarray(255 - digit.astype(np.uint8)).resize((140, 140)).save(path)  # dark ink on white
    before = answers(page)
    page.find_element(By.ID, "upload").send_keys(str(path))
    shown = settled_answer(page, before)
    assert shown == check_shown(page, digit_run, path)
    assert shown == label


def test_a_two_class_table_models_form_gets_mlp_predicts_answer(table_page, csv_run, tmp_path):
    """A model with two classes (fewer than the three answers the page shows for digits)."""
    with open("configs/data/breast_cancer_test.csv") as f:
        header, row = f.readline().strip().split(","), f.readline().strip().split(",")
    cells = {name: value for name, value in zip(header, row) if name != "diagnosis"}
    for name, value in cells.items():
        table_page.find_element(By.CSS_SELECTOR, f'#fields input[name="{name}"]').send_keys(value)
    before = answers(table_page)
    table_page.find_element(By.CSS_SELECTOR, "#table-form button, #table-form [type=submit]").click()
    shown = settled_answer(table_page, before)
    rows = tmp_path / "row.csv"
    rows.write_text(",".join(cells) + "\n" + ",".join(cells.values()) + "\n")
    assert shown == predicted(csv_run, rows)[0]
    assert len(shown_top(table_page)) == 2
