"""A hostile environment around every command: folders that cannot be written, a full
disk, a file-size limit, over-long and non-UTF-8 names, a file where a folder should be.

Each case runs ``python -m mlpcli`` as a real process and asserts: the exit code,
exactly one ``Error:`` line on stderr and no ``Traceback``, and that a failed
command left the tree exactly as it was (same paths, same bytes: no ``.tmp-*``
file, no new empty folder, nothing of the user's changed). ``.lock`` holds the
pid of the last ``mlp train`` and is left out of the comparison.

How each environment is made, so that the module runs unprivileged in CI too:

* read-only folders: ``chmod a-w``. Root ignores permission bits, so when the
  tests run as root the child runs under ``setpriv`` with every capability
  dropped: still uid 0 (it can read everything it owns) but bound by the bits,
  like any user. Skipped where setpriv is missing or cannot drop capabilities.
* a full disk: a tmpfs just larger than a run, filled to the last byte, when this process may
  mount one (root with CAP_SYS_ADMIN; skipped otherwise). The file-size limit
  below reaches the same code in CI without privileges, and
  ``train.log -> /dev/full`` gives a real ENOSPC on the log's appends.
* a file-size limit: ``RLIMIT_FSIZE`` = 0 in the child; every write to a file,
  HDF5's included, fails in the kernel with EFBIG ("File too large").
* over-long names, non-UTF-8 bytes in names and a file as a path component are
  plain paths.

A link that moves to another folder mid-run is not covered: a run holds its
folder by the path it resolved once, and making the race happen on cue would
need a hook in the code.
"""

import contextlib
import hashlib
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = ["-q", "--no-plots", "--set", "data.max_train_samples=600", "--set", "training.epochs=1",
        "--set", "data.max_test_samples=200"]
QUICK = str(REPO / "configs" / "quick.yaml")
LONG = "x" * 300  # over NAME_MAX (255 bytes)
NON_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
SETPRIV = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
CHILD_TIMEOUT = 300  # generous: the machine may be loaded


# ---------------------------------------------------------------- running the CLI


def mlp(*args, unprivileged=False, file_size_limit=None):
    """Run ``python -m mlpcli ARGS`` (bytes or str arguments) in the repository root."""
    command = [sys.executable, "-m", "mlpcli", *(os.fspath(a) if isinstance(a, Path) else a
                                                for a in args)]
    if unprivileged and os.geteuid() == 0:
        command = SETPRIV + command

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.RLIM_INFINITY))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=CHILD_TIMEOUT,
                            preexec_fn=limit if file_size_limit is not None else None)
    # our messages show non-UTF-8 path bytes as \xNN: the output is always valid UTF-8
    result.stdout, result.stderr = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    return result


def failed_cleanly(result, code, *words):
    """Assert exit ``code``, no traceback and one ``Error:`` line on stderr holding ``words``."""
    everything = result.stdout + result.stderr
    assert result.returncode == code, everything
    assert "Traceback" not in everything, everything
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), (word, errors[0])
    return errors[0]


def snapshot(*roots):
    """{path: what it is} under ``roots``: a file's hash, a link's target, or 'folder'."""
    seen = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            seen[folder] = "folder"
            for name in dirs + files:
                path = os.path.join(folder, name)
                if name == ".lock":
                    continue
                if os.path.islink(path):
                    seen[path] = "link:" + os.readlink(path)
                elif os.path.isfile(path):
                    with open(path, "rb") as f:
                        seen[path] = hashlib.sha1(f.read()).hexdigest()
    return seen


@contextlib.contextmanager
def unchanged(*roots, log=None):
    """Assert that nothing under ``roots`` was added, removed or changed meanwhile; ``log``
    (a run's train.log, which records the attempt) may only have grown."""
    before = snapshot(*roots)
    logged = Path(log).read_bytes() if log else None
    yield
    after = snapshot(*roots)
    assert sorted(set(after) - set(before)) == [], "left behind"
    assert sorted(set(before) - set(after)) == [], "removed"
    assert [p for p in before if before[p] != after[p] and p != os.fspath(log)] == [], "changed"
    if log:
        assert Path(log).read_bytes().startswith(logged)


def read_only(*paths):
    """chmod a-w everything under ``paths`` (undone by the ``writable_again`` fixture)."""
    for root in paths:
        for folder, dirs, files in os.walk(root):
            for name in files:
                p = os.path.join(folder, name)
                os.chmod(p, os.stat(p).st_mode & ~0o222)
        for folder, dirs, files in sorted(os.walk(root), reverse=True):  # folders last, deepest first
            os.chmod(folder, os.stat(folder).st_mode & ~0o222)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run folder and a 28x28 PNG digit, made once."""
    base = tmp_path_factory.mktemp("hostile-env")
    run = base / "run"
    result = mlp("train", QUICK, *TINY, "--run-dir", run)
    assert result.returncode == 0, result.stderr
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    png = base / "digit.png"
    Image.fromarray(digit).save(png)
    return run, png


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run this test may spoil."""
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy, symlinks=True)
    return copy


@pytest.fixture
def png(trained):
    return trained[1]


@pytest.fixture
def writable_again(tmp_path):
    """Gives back write permission under tmp_path after the test, so it can be removed."""
    yield
    for folder, dirs, files in os.walk(tmp_path):
        os.chmod(folder, os.stat(folder).st_mode | stat.S_IWUSR | stat.S_IXUSR)


@pytest.fixture(scope="module")
def permission_bits_hold(tmp_path_factory):
    """Skip unless a child run by ``mlp(unprivileged=True)`` is refused a read-only folder."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits do not bind the child")
    folder = tmp_path_factory.mktemp("probe")
    os.chmod(folder, 0o555)
    command = [sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"]
    if os.geteuid() == 0:
        command = SETPRIV + command
    probe = subprocess.run(command, capture_output=True, text=True)
    os.chmod(folder, 0o755)
    if probe.returncode == 0 or "PermissionError" not in probe.stderr:
        pytest.skip(f"cannot make a folder read-only for a child process: {probe.stderr[-200:]}")


@pytest.fixture(scope="module")
def full_disk(trained, tmp_path_factory):
    """A tmpfs holding a copy of the trained run, filled to the last byte."""
    mount_point = tmp_path_factory.mktemp("full-disk")
    size = sum(-(-p.stat().st_size // 4096) * 4 for p in trained[0].rglob("*") if p.is_file()) + 256
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the file-size "
                    "limit cases cover the same code")
    try:
        shutil.copytree(trained[0], mount_point / "run", symlinks=True)
        (mount_point / "out").mkdir()
        with open(mount_point / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        with open(mount_point / "filler", "ab", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0")  # the last bytes of a part-used page
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


# ---------------------------------------------------------------- read-only folders


def test_evaluate_in_read_only_run_prints_report_then_one_error(run, permission_bits_hold,
                                                                writable_again):
    read_only(run)
    with unchanged(run):
        result = mlp("evaluate", run, unprivileged=True)
    failed_cleanly(result, 1, str(run / "evaluation.json"), "permission denied")
    assert "confusion matrix" in result.stdout  # the report is shown before the write fails


def test_resume_of_read_only_run(run, permission_bits_hold, writable_again):
    read_only(run)
    with unchanged(run):
        result = mlp("train", "--resume", run, "--set", "training.epochs=2", "-q", unprivileged=True)
    failed_cleanly(result, 1, str(run), "permission denied")


def test_train_into_read_only_runs_root(tmp_path, permission_bits_hold, writable_again):
    root = tmp_path / "runs"
    root.mkdir()
    read_only(root)
    with unchanged(tmp_path):
        result = mlp("train", QUICK, *TINY, "--runs-root", root, unprivileged=True)
    failed_cleanly(result, 1, str(root), "permission denied")


@pytest.mark.parametrize("command", [
    ["predict", "{png}", "--run", "{run}", "--save-preprocessed", "{out}/digits"],
    ["compare", "{run}", "--out", "{out}/figures"],
    ["plot", "{run}", "--out", "{out}/figures"],
], ids=["predict-save-preprocessed", "compare-out", "plot-out"])
def test_output_into_read_only_folder(command, run, png, tmp_path, permission_bits_hold, writable_again):
    out = tmp_path / "out"
    out.mkdir()
    read_only(out)
    args = [c.format(png=png, run=run, out=out) for c in command]
    with unchanged(tmp_path):
        result = mlp(*args, unprivileged=True)
    failed_cleanly(result, 1, str(out), "permission denied")


def test_plot_of_read_only_run(run, permission_bits_hold, writable_again):
    read_only(run)
    with unchanged(run):
        result = mlp("plot", run, unprivileged=True)
    failed_cleanly(result, 1, str(run / "plots"), "permission denied")


def test_sweep_into_read_only_runs_root(tmp_path, permission_bits_hold, writable_again):
    root = tmp_path / "runs"
    root.mkdir()
    read_only(root)
    with unchanged(tmp_path):
        result = mlp("sweep", QUICK, *TINY[1:], "--grid", "training.batch_size=64,128", "--runs-root",
                     root, unprivileged=True)
    failed_cleanly(result, 1, str(root), "permission denied")


# ---------------------------------------------------------------- a full disk


def test_train_onto_full_disk(full_disk):
    with unchanged(full_disk):
        result = mlp("train", QUICK, *TINY, "--runs-root", full_disk / "runs")
    failed_cleanly(result, 1, "no space left")


@pytest.mark.parametrize("command, words", [
    (["evaluate", "{run}"], ["evaluation.json", "no space left"]),
    (["train", "--resume", "{run}", "--set", "training.epochs=2", "-q", "--no-plots"], ["no space left"]),
    (["predict", "{png}", "--run", "{run}", "--save-preprocessed", "{out}/digits"], ["no space left"]),
    (["compare", "{run}", "--out", "{out}"], ["no space left"]),
], ids=["evaluate", "resume", "predict-save-preprocessed", "compare-out"])
def test_full_disk(command, words, full_disk, png):
    args = [c.format(run=full_disk / "run", out=full_disk / "out", png=png) for c in command]
    with unchanged(full_disk, log=full_disk / "run" / "train.log"):
        result = mlp(*args)
    failed_cleanly(result, 1, *words)


@pytest.mark.parametrize("target", ["/dev/full", "{tmp}/victim.txt"], ids=["dev-full", "a-file"])
def test_train_log_that_is_a_link_is_not_written_through(run, tmp_path, target):
    """Review finding 2: a train.log link made --resume append to whatever it points at."""
    target = Path(target.format(tmp=tmp_path))
    if target.parent == tmp_path:
        target.write_text("precious\n")
    (run / "train.log").unlink()
    (run / "train.log").symlink_to(target)
    result = mlp("train", "--resume", run, "--set", "training.epochs=2", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "symbolic link" in warnings[0], result.stderr
    assert str(run / "train.log") in warnings[0]
    assert "Epoch 2/2" in result.stdout
    assert (run / "resume" / "epoch-0002.h5").is_file()
    assert target.parent != tmp_path or target.read_text() == "precious\n"


@pytest.mark.parametrize("make", ["symlink", "hardlink", "fifo"])
def test_lock_that_is_not_a_file_of_its_own_is_refused(run, tmp_path, make):
    """Review finding 2: `train --resume` wrote its pid into whatever .lock pointed at."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = run / ".lock"
    lock.unlink(missing_ok=True)
    {"symlink": lambda: lock.symlink_to(victim), "hardlink": lambda: os.link(victim, lock),
     "fifo": lambda: os.mkfifo(lock)}[make]()
    with unchanged(run):
        result = mlp("train", "--resume", run, "--set", "training.epochs=2", "-q", "--no-plots")
    failed_cleanly(result, 1, str(lock), "the lock of this run")
    assert victim.read_text() == "precious\n"


# ---------------------------------------------------------------- a file-size limit (EFBIG)


@pytest.mark.parametrize("command, words", [
    (["evaluate", "{run}"], ["evaluation.json", "file too large"]),
    (["train", "--resume", "{run}", "--set", "training.epochs=2", "-q", "--no-plots"], ["file too large"]),
    (["predict", "{png}", "--run", "{run}", "--save-preprocessed", "{out}/digits"], ["file too large"]),
    (["plot", "{run}", "--out", "{out}"], ["file too large"]),
], ids=["evaluate", "resume", "predict-save-preprocessed", "plot-out"])
def test_file_size_limit(command, words, run, png, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = [c.format(run=run, out=out, png=png) for c in command]
    with unchanged(tmp_path):
        result = mlp(*args, file_size_limit=0)
    failed_cleanly(result, 1, *words)


@pytest.mark.parametrize("how", ["new-run", "resume"])
def test_file_size_limit_that_cuts_an_hdf5_write_part_way(run, tmp_path, how):
    """Review finding 4: 100 KiB lets the small files through, then cuts the first checkpoint
    (about 110 KB) part-way; h5py raised its own RuntimeError on top of EFBIG, a traceback."""
    assert (run / "model.h5").stat().st_size > 100 * 1024
    args = (["train", QUICK, *TINY, "--runs-root", tmp_path / "runs"] if how == "new-run"
            else ["train", "--resume", run, "--set", "training.epochs=2", "-q", "--no-plots"])
    result = mlp(*args, file_size_limit=100 * 1024)
    failed_cleanly(result, 1, ".h5", "file too large", "previous version")
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_train_under_file_size_limit(tmp_path):
    with unchanged(tmp_path):
        result = mlp("train", QUICK, *TINY, "--runs-root", tmp_path / "runs", file_size_limit=0)
    failed_cleanly(result, 1, "file too large")


# ---------------------------------------------------------------- files read whole


@pytest.mark.parametrize("make, code, words", [
    (lambda p: os.mkfifo(p), 1, ["a FIFO"]),  # not a file at all: an OS-level refusal
    (lambda p: p.symlink_to("/dev/zero"), 1, ["character device"]),
    (lambda p: (p.touch(), os.truncate(p, 9 * 2**20)), 2, ["larger than 8 MiB"]),  # a bad config
], ids=["fifo", "dev-zero", "over-the-cap"])
def test_config_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path, make, code, words):
    """Review findings 6 and 14: a FIFO config hung for ever, /dev/zero ran out of memory."""
    config = tmp_path / "c.yaml"
    make(config)
    with unchanged(tmp_path):
        result = mlp("train", config, "--dry-run")
    failed_cleanly(result, code, str(config), *words)


def test_run_files_linked_to_a_device_or_too_large_are_not_read(run, tmp_path):
    """Review finding 6: a run's config.yaml, results.json, summary.txt linked to /dev/zero, or a
    huge history.csv, made compare read until memory ran out."""
    other = tmp_path / "other"
    shutil.copytree(run, other, symlinks=True)
    for name in ("config.yaml", "results.json", "summary.txt"):
        (run / name).unlink()
        (run / name).symlink_to("/dev/zero")
    os.truncate(other / "history.csv", 65 * 2**20)
    result = mlp("compare", run, other, "--out", tmp_path / "out")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "larger than 64 MiB" in result.stdout, result.stdout


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("command", [
    ["train", QUICK, *TINY, "--run-dir", "{tmp}/" + LONG],
    ["evaluate", "{run}", "--data", "{tmp}/" + LONG + ".npz"],
    ["predict", "{png}", "--run", "{run}", "--save-preprocessed", "{tmp}/" + LONG],
    ["compare", "{run}", "--out", "{tmp}/" + LONG],
], ids=["train-run-dir", "evaluate-data", "predict-save-preprocessed", "compare-out"])
def test_over_long_name(command, run, png, tmp_path):
    args = [c.format(tmp=tmp_path, run=run, png=png) for c in command]
    with unchanged(tmp_path):
        result = mlp(*args)
    failed_cleanly(result, 1, "too long")


def test_over_long_png_name_for_save_preprocessed(run, tmp_path, png):
    source = tmp_path / ("d" * 250 + ".png")  # fits; "<stem>-28x28.png" does not
    shutil.copy(png, source)
    with unchanged(tmp_path):
        result = mlp("predict", source, "--run", run, "--save-preprocessed", tmp_path / "digits")
    failed_cleanly(result, 1, "file name too long")


@pytest.mark.parametrize("command", [
    ["predict", "{png}", "--run", "{run}", "--save-preprocessed", "{file}/digits"],
    ["compare", "{run}", "--out", "{file}/figures"],
    ["train", QUICK, *TINY, "--runs-root", "{file}/runs"],
    ["sweep", QUICK, *TINY[1:], "--grid", "training.batch_size=64,128", "--runs-root", "{file}/runs"],
], ids=["predict-save-preprocessed", "compare-out", "train-runs-root", "sweep-runs-root"])
def test_a_file_where_a_folder_should_be(command, run, png, tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("the user's notes\n")
    args = [c.format(run=run, png=png, file=file) for c in command]
    with unchanged(tmp_path):
        result = mlp(*args)
    failed_cleanly(result, 1, str(file))


def test_non_utf8_run_folder_name_is_shown_escaped(tmp_path, png):
    run = os.fsencode(tmp_path) + b"/run-\xe9"
    with_plots = [arg for arg in TINY if arg not in ("-q", "--no-plots")]
    result = mlp("train", QUICK, *with_plots, "--run-dir", run)
    assert result.returncode == 0, result.stderr
    assert "run-\\xe9" in result.stdout and "Traceback" not in result.stderr
    assert Path(os.fsdecode(run), "results.json").is_file()
    assert list(Path(os.fsdecode(run), "plots").glob("loss.png"))
    assert "run-\\xe9" in Path(os.fsdecode(run), "train.log").read_text(encoding="utf-8")
    result = mlp("evaluate", run)
    assert result.returncode == 0, result.stderr
    assert "run-\\xe9/evaluation.json" in result.stdout
    result = mlp("predict", png, "--run", run, "--save-preprocessed", os.fsencode(tmp_path) + b"/d\xe9")
    assert result.returncode == 0, result.stderr
    result = mlp("plot", run)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert list(Path(os.fsdecode(run), "plots").glob("confusion_matrix.png"))
    result = mlp("compare", run, "--out", tmp_path / "compared")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "run-\\xe9" in result.stdout
    assert (tmp_path / "compared" / "compare-loss.png").is_file()


def test_non_utf8_name_in_an_error(run, tmp_path, permission_bits_hold, writable_again):
    out = tmp_path / NON_UTF8
    out.mkdir()
    read_only(out)
    with unchanged(tmp_path):
        result = mlp("compare", run, "--out", os.fsencode(out) + b"/figures", "--no-plots")
    assert result.returncode == 0, result.stderr  # --no-plots: nothing to write
    with unchanged(tmp_path):
        result = mlp("compare", run, "--out", os.fsencode(out) + b"/figures", unprivileged=True)
    failed_cleanly(result, 1, "caf\\xe9/figures", "permission denied")
    missing = os.fsencode(tmp_path) + b"/gone-\xff"
    failed_cleanly(mlp("evaluate", missing), 2, "gone-\\xff")
