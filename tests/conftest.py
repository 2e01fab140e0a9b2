"""In CI every optional suite must run.

.ci/run installs Keras, torch and Dask, so in CI (``CI=true``) a test skipped because an
import failed, or a test module skipped as a whole, means a broken install: it is
reported as a failure naming what was missing, instead of a skip in a green run.
"""

import os

import pytest

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
