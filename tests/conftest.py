"""Fixtures shared by several test modules, and the rule that in CI every optional suite runs.

.ci/run installs Keras, torch and Dask, so in CI (``CI=true``) a test skipped because an
import failed, or a test module skipped as a whole, means a broken install: it is
reported as a failure naming what was missing, instead of a skip in a green run.
"""

import csv
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli.cli import main

IMPORT_SKIP = "Skipped: could not import "  # how pytest.importorskip words its skips


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_dropped_suite(outcome.get_result(), whole_module=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_dropped_suite(outcome.get_result(), whole_module=False)


def _fail_dropped_suite(report, whole_module):
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    path, lineno, reason = report.longrepr
    if whole_module or reason.startswith(IMPORT_SKIP):
        report.outcome = "failed"
        report.longrepr = (f"{path}:{lineno}: CI runs every optional suite (.ci/run installs them), "
                           f"but this one was {reason[0].lower()}{reason[1:]}")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """configs/quick.yaml trained on 200 MNIST images for one epoch: a real run folder with its
    model.h5, for tests that read a model (they must not write into it)."""
    return quick_run(tmp_path_factory.mktemp("tiny") / "run", samples=200, epochs=1)


def quick_run(run_dir, samples, epochs):
    """configs/quick.yaml trained into ``run_dir`` on ``samples`` MNIST images for ``epochs``."""
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(run_dir), "-q",
                                       "--no-plots", "--set", f"data.max_train_samples={samples}",
                                       "--set", f"training.epochs={epochs}"])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="session")
def csv_run(tmp_path_factory):
    """configs/breast-cancer.yaml for one epoch: a table model (30 named columns, standardized,
    classes benign and malignant) in a real run folder, for tests that read it (copy it before
    changing it)."""
    run_dir = tmp_path_factory.mktemp("breast-cancer") / "run"
    result = CliRunner().invoke(main, ["train", "configs/breast-cancer.yaml", "--run-dir", str(run_dir), "-q",
                                       "--no-plots", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    return run_dir


# ------------------------------------------------------------------ PNG files made byte by byte

def chunk(kind, data):
    """One PNG chunk: length, 4-byte type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


EMPTY_IDAT = zlib.compress(b"")


def png_bytes(width, height, idat=EMPTY_IDAT, chunks=None):
    """A PNG file's bytes: 8-bit grayscale width x height header, then ``chunks``
    (by default one IDAT of ``idat`` as pixel data) and IEND."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IDAT", idat) if chunks is None else b"".join(chunks)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


def start_training(run_dir, settings, *extra):
    """``mlp train configs/mnist.yaml`` into ``run_dir`` as a real process, with ``settings``
    and ``extra`` arguments; the Popen (text pipes)."""
    return subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/mnist.yaml",
                             "--run-dir", str(run_dir), *settings, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_training(run_dir, settings, *extra, after_epoch=2):
    """Train into ``run_dir`` as a real process and send it SIGINT once epoch ``after_epoch``'s
    resume state exists (so the stop lands in the next epoch); asserts it ended with exit 130."""
    proc = start_training(run_dir, settings, *extra)
    deadline = time.time() + 300
    while not (run_dir / "resume" / f"epoch-{after_epoch:04d}.h5").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err


def interrupt_and_resume(run_dir, settings, *extra, after_epoch=2):
    """``interrupt_training``, then ``mlp train --resume`` to the end; asserts each step."""
    interrupt_training(run_dir, settings, *extra, after_epoch=after_epoch)
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "--resume", str(run_dir), "--no-plots", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ headless Chromium (page tests)

BROWSER_PACKAGES = "chromium chromium-driver"


def headless_chromium(window_size):
    """A headless Chromium driven by Selenium (the caller quits it), with the browser console's
    log kept (``driver.get_log("browser")``). A test module imports selenium with
    ``pytest.importorskip`` before calling this; missing Debian packages are a skip naming them
    (in CI a failure: .ci/run installs them, so the suite must not quietly drop out)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        reason = (f"no headless browser for the page test (chromium: {chromium}, chromedriver: {driver}); "
                  f"install Debian's packages: apt-get install {BROWSER_PACKAGES}")
        if in_ci():
            pytest.fail(f"CI runs every optional suite (.ci/run installs them), but {reason}")
        pytest.skip(reason)
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={window_size[0]},{window_size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def save_screenshot(driver, path):
    """The browser's window as the PNG ``path`` (a README screenshot), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial" + path.suffix)  # selenium wants a .png name
    assert driver.save_screenshot(str(partial))
    os.replace(partial, path)


def numeric_grad(f, x, eps=1e-6, entries=None):
    """Central-difference gradient of scalar ``f`` at float64 array ``x`` (modified
    in place and restored). ``entries``: only these indices (others stay NaN)."""
    assert x.dtype == np.float64
    grad = np.full(x.shape, np.nan)
    for idx in (entries if entries is not None else np.ndindex(x.shape)):
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def same_weights(a, b):
    """Whether model files ``a`` and ``b`` hold bit-identical weights."""
    from mlpcli import modelfile

    return all(np.array_equal(x, y) for x, y in
               zip(modelfile.load(a).model.params, modelfile.load(b).model.params, strict=True))


def history(run_dir):
    """history.csv's rows."""
    with (run_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- sweeps

def invoke(args):
    """``mlp ARGS`` in this process (each argument as text); the click Result."""
    return CliRunner().invoke(main, [str(a) for a in args])


def sweep_dir(root):
    """The one sweep folder under the runs root ``root``."""
    (folder,) = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    return folder


def read_rows(folder):
    """The rows of a sweep folder's results.csv, as text."""
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))
