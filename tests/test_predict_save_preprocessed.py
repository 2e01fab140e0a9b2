"""``mlp predict --save-preprocessed``: one file per input, and never one replacing another."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlpcli import files, images, predict
from mlpcli.cli import main
from mlpcli.errors import MlpError


def bar(path, vertical):
    """A white bar on black, upright or lying: two digits that must not be mixed up."""
    canvas = np.zeros((40, 40), np.uint8)
    if vertical:
        canvas[8:32, 18:22] = 255
    else:
        canvas[18:22, 8:32] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path


def predict_saving(run_dir, seen, *inputs):
    return CliRunner().invoke(main, ["predict", *map(str, inputs), "--run", str(run_dir),
                                     "--save-preprocessed", str(seen)])


def saved(path):
    return np.asarray(Image.open(path)).astype(np.float32)


def test_same_names_in_two_folders_get_two_files(tiny_run, tmp_path):
    a, b = bar(tmp_path / "a" / "3.png", True), bar(tmp_path / "b" / "3.png", False)
    result = predict_saving(tiny_run, tmp_path / "seen", a, b)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "seen").as_posix() for p in (tmp_path / "seen").rglob("*")
                  if p.is_file()) == ["a/3-28x28.png", "b/3-28x28.png"]
    for source, name in ((a, "a/3-28x28.png"), (b, "b/3-28x28.png")):
        np.testing.assert_allclose(saved(tmp_path / "seen" / name), images.load_digit(source), atol=1)


def test_one_folder_keeps_flat_names_and_case_twins_stay_apart(tiny_run, tmp_path):
    inputs = [bar(tmp_path / "in" / "x.png", True), bar(tmp_path / "in" / "x.PNG", False),
              bar(tmp_path / "in" / "y.png", True)]
    result = predict_saving(tiny_run, tmp_path / "seen", *inputs)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == \
        ["x.PNG-28x28.png", "x.png-28x28.png", "y-28x28.png"]


def test_an_input_given_twice_is_saved_once(tiny_run, tmp_path):
    digit = bar(tmp_path / "d.png", True)
    result = predict_saving(tiny_run, tmp_path / "seen", digit, tmp_path / "." / "d.png")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "seen").iterdir()] == ["d-28x28.png"]


def test_an_existing_file_is_refused_and_kept(tiny_run, tmp_path):
    digit = bar(tmp_path / "d.png", True)
    (tmp_path / "seen").mkdir()
    (tmp_path / "seen" / "d-28x28.png").write_bytes(b"mine")
    result = predict_saving(tiny_run, tmp_path / "seen", digit)
    assert result.exit_code == 2 and "would overwrite" in result.output
    assert (tmp_path / "seen" / "d-28x28.png").read_bytes() == b"mine"


def test_a_file_appearing_after_the_check_is_not_replaced(tmp_path):
    """The write itself refuses an existing name (a link, not a rename), whatever was checked."""
    target = tmp_path / "d-28x28.png"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError), files.atomic_path(target, replace=False) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["d-28x28.png"]  # no temporary left behind


def test_a_file_appearing_during_the_save_is_kept_and_the_rest_removed(tmp_path, monkeypatch):
    """Between the check and the write another process creates one of the names: the save
    stops with 'would overwrite', that file stays, and what the save made is removed."""
    sources = [bar(tmp_path / "in" / f"{n}.png", n % 2 == 0) for n in range(3)]
    digits = np.stack([images.load_digit(p) for p in sources])
    out = tmp_path / "seen" / "deeper"
    real_atomic_path = files.atomic_path

    def intruder(path, **kwargs):
        if path.name.startswith("2"):
            path.write_bytes(b"theirs")
        return real_atomic_path(path, **kwargs)

    monkeypatch.setattr(files, "atomic_path", intruder)
    with pytest.raises(MlpError, match="would overwrite"):
        predict._save_seen(out, sources, digits)
    assert [p.name for p in out.iterdir()] == ["2-28x28.png"]
    assert (out / "2-28x28.png").read_bytes() == b"theirs"
