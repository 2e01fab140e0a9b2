"""tests/conftest.py: in CI a suite dropped for a missing import fails the run; elsewhere it skips."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")

# keras broken as a whole module (module-level importorskip), dask inside a fixture
# (a test-level skip), and a skip that has nothing to do with imports
SUITE = {
    "test_keras_suite": """
        import sys

        import pytest

        sys.modules["keras"] = None  # as if keras were not installed
        keras = pytest.importorskip("keras")


        def test_parity():
            pass
        """,
    "test_dask_suite": """
        import sys

        import pytest


        @pytest.fixture
        def cluster():
            sys.modules["dask.distributed"] = None
            return pytest.importorskip("dask.distributed")


        def test_dask_sweep(cluster):
            pass


        def test_needs_two_cores():
            pytest.skip("needs two cores")


        def test_plain():
            pass
        """,
    "test_backend_suite": """
        import pytest

        pytest.skip("these tests drive Keras through its torch backend", allow_module_level=True)
        """,
}


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**SUITE)
    return pytester


def test_in_ci_a_suite_skipped_for_a_missing_import_fails_naming_it(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors", "-rfEs")
    result.assert_outcomes(passed=1, skipped=1, errors=3)
    result.stdout.fnmatch_lines([
        "*test_keras_suite.py*CI runs every optional suite*skipped: could not import 'keras'*",
        "*test_backend_suite.py*CI runs every optional suite*skipped: these tests drive Keras*",
        "*test_dask_sweep*CI runs every optional suite*could not import 'dask.distributed'*",
        "SKIPPED*needs two cores*",
    ])
    assert result.ret != 0


def test_outside_ci_the_same_suite_skips(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == 0
