"""Image augmentation (mlpcli/data/augment.py): Keras's meanings, the fill modes, the random
draws, determinism by seed, epoch and sample, and the config's checks. Training with it
(one process as two, resume bit for bit) is in test_augment_training.py."""

import math

import numpy as np
import pytest
import yaml

from mlpcli.config import resolve
from mlpcli.data.augment import Augmenter, uniform_numbers
from mlpcli.errors import ConfigError

SETTINGS = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear"}


def augmenter(transforms, shape=(12, 17), seed=0, **settings):
    return Augmenter({"transforms": transforms, **SETTINGS, **settings}, shape, seed)


def augmented(aug, images, epoch=1, samples=None, n=None):
    """Each of ``images`` (k, H, W[, C]) augmented as training sample ``samples[i]`` of ``n``."""
    samples = np.arange(len(images)) if samples is None else np.asarray(samples)
    out = np.empty((len(images), math.prod(images.shape[1:])), np.float32)
    aug.apply(images, samples, aug.epoch_bank(n or len(images), epoch), out)
    return out.reshape(images.shape)


def images(k=3, shape=(12, 17), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (k, *shape)).astype(np.uint8)


# ---------------------------------------------------------------- against Keras


def keras_layer(name, fill_mode, interpolation, fill_value=3.0):
    """Keras's layer of ``name`` drawing a fixed value (both ends of each factor equal)."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    settings = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=fill_value)
    ours, theirs = {
        "random_rotation": ({"factor": [0.07, 0.07]}, lambda: keras.layers.RandomRotation((0.07, 0.07), **settings)),
        "random_zoom": ({"height_factor": [-0.23, -0.23], "width_factor": [0.31, 0.31]},
                        lambda: keras.layers.RandomZoom((-0.23, -0.23), (0.31, 0.31), **settings)),
        "random_translation": ({"height_factor": [0.13, 0.13], "width_factor": [-0.27, -0.27]},
                               lambda: keras.layers.RandomTranslation((0.13, 0.13), (-0.27, -0.27), **settings)),
    }[name]
    return {"type": name, **ours}, theirs()


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "nearest", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("name", ["random_rotation", "random_zoom", "random_translation"])
def test_each_transform_is_what_keras_3_does(name, fill_mode, interpolation):
    transform, layer = keras_layer(name, fill_mode, interpolation)
    x = images()
    want = np.asarray(layer(x[..., None].astype(np.float32), training=True))[..., 0]
    got = augmented(augmenter([transform], fill_mode=fill_mode, fill_value=3.0, interpolation=interpolation), x)
    # pixels 0-255; Keras and we compute the source points in float32 in different orders
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    assert not np.allclose(got, x, atol=1)  # the transform did something


def test_colour_images_are_transformed_as_keras_does():
    transform, layer = keras_layer("random_rotation", "reflect", "bilinear")
    x = images(shape=(10, 9, 3))
    want = np.asarray(layer(x.astype(np.float32), training=True))
    got = augmented(augmenter([transform], shape=(10, 9, 3), fill_mode="reflect"), x)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)


# ---------------------------------------------------------------- without Keras


def test_transforms_of_nothing_leave_images_as_they_are():
    x = images()
    nothing = [{"type": "random_rotation", "factor": 0}, {"type": "random_zoom", "height_factor": 0,
                                                          "width_factor": None},
               {"type": "random_translation", "height_factor": 0, "width_factor": 0}]
    np.testing.assert_array_equal(augmented(augmenter(nothing), x), x)


@pytest.mark.parametrize("mode, left", [("constant", [7, 7]), ("nearest", ["a", "a"]), ("wrap", ["y", "z"]),
                                        ("reflect", ["b", "a"])])
def test_a_shift_right_fills_the_left_columns_as_the_fill_mode_says(mode, left):
    x = images(k=1, shape=(4, 8))
    shift = [{"type": "random_translation", "height_factor": 0, "width_factor": [0.25, 0.25]}]  # 2 pixels
    got = augmented(augmenter(shift, shape=(4, 8), fill_mode=mode, fill_value=7.0), x)[0]
    np.testing.assert_array_equal(got[:, 2:], x[0, :, :6])
    row = x[0]
    named = {"a": row[:, 0], "b": row[:, 1], "y": row[:, 6], "z": row[:, 7]}
    for column, what in enumerate(left):
        want = np.full(4, what) if isinstance(what, int) else named[what]
        np.testing.assert_array_equal(got[:, column], want)


def test_listed_transforms_compose_in_keras_order_into_one_resampling():
    """Zooming in 2x, then shifting right by a quarter, reads the source image from the point
    the two maps give in that order (the first listed is applied first)."""
    x = images(k=1, shape=(9, 9))
    zoom_then_shift = [{"type": "random_zoom", "height_factor": [-0.5, -0.5], "width_factor": None},
                       {"type": "random_translation", "height_factor": 0, "width_factor": [2 / 9, 2 / 9]}]
    got = augmented(augmenter(zoom_then_shift, shape=(9, 9), interpolation="nearest"), x)[0]
    # output (x, y) <- shifted image at (x - 2, y) <- zoomed at centre 4: source 4 + 0.5 (p - 4)
    for y in range(9):
        for column in range(2, 9):
            sx, sy = 4 + 0.5 * (column - 2 - 4), 4 + 0.5 * (y - 4)
            assert got[y, column] == x[0, int(np.rint(sy)), int(np.rint(sx))]
    shift_then_zoom = list(reversed(zoom_then_shift))
    assert not np.array_equal(augmented(augmenter(shift_then_zoom, shape=(9, 9), interpolation="nearest"), x)[0], got)


def test_draws_are_uniform_over_the_factors_range():
    aug = augmenter([{"type": "random_rotation", "factor": 0.1},
                     {"type": "random_zoom", "height_factor": [-0.2, 0.3], "width_factor": None}], seed=3)
    maps = aug.maps(np.arange(20000), aug.epoch_keys(1))
    linear = maps[:, :, :2]
    scale = np.sqrt(np.linalg.det(linear))  # the zoom (width_factor null: the same both ways)
    angle = np.degrees(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
    np.testing.assert_allclose(np.hypot(linear[:, 0, 0], linear[:, 1, 0]), scale, rtol=1e-9)
    assert -36 <= angle.min() < -35.5 and 35.5 < angle.max() <= 36
    assert 0.8 <= scale.min() < 0.81 and 1.29 < scale.max() <= 1.3
    for values, low, high in ((angle, -36, 36), (scale, 0.8, 1.3)):  # deciles of a uniform draw
        deciles = np.quantile(values, np.linspace(0.1, 0.9, 9))
        np.testing.assert_allclose(deciles, low + (high - low) * np.linspace(0.1, 0.9, 9), atol=(high - low) / 50)


def test_an_image_is_augmented_by_its_seed_epoch_and_index_alone():
    x = images(k=6)
    aug = augmenter([{"type": "random_rotation", "factor": 0.2}, {"type": "elastic", "alpha": 20.0, "sigma": 2.0}])
    batch = augmented(aug, x, epoch=3, samples=[0, 1, 2, 3, 4, 5])
    alone = augmented(augmenter(aug_spec := [{"type": "random_rotation", "factor": 0.2},
                                             {"type": "elastic", "alpha": 20.0, "sigma": 2.0}]),
                      x[[4]], epoch=3, samples=[4], n=6)
    np.testing.assert_array_equal(alone[0], batch[4])  # whatever batch, chunk or process it is in
    assert not np.array_equal(augmented(augmenter(aug_spec), x, epoch=4), batch)
    assert not np.array_equal(augmented(augmenter(aug_spec, seed=1), x, epoch=3), batch)
    assert not np.array_equal(batch[0], augmented(augmenter(aug_spec), x[[0]], epoch=3, samples=[1], n=6)[0])


def test_an_epoch_draws_a_bank_of_transforms_each_image_takes_one_of():
    aug = augmenter([{"type": "random_rotation", "factor": 0.2}])
    few = aug.epoch_bank(100, epoch=1)
    np.testing.assert_array_equal(few.choice, np.arange(100))  # fewer images than the bank: one each
    many = aug.epoch_bank(20 * aug.bank_size, epoch=1)
    counts = np.bincount(many.choice, minlength=aug.bank_size)
    assert len(counts) == aug.bank_size and counts.min() > 0 and 10 < counts.mean() < 30
    assert not np.array_equal(aug.epoch_bank(20 * aug.bank_size, epoch=2).choice, many.choice)


def test_large_images_get_their_transforms_with_their_batch_the_same_way():
    spec = [{"type": "random_rotation", "factor": 0.2}, {"type": "random_zoom", "height_factor": 0.3,
                                                         "width_factor": None}]
    aug = augmenter(spec, shape=(60, 70))
    assert aug.bank_size is None and aug.epoch_bank(1000, epoch=1).choice is None
    x = images(k=5, shape=(60, 70))
    batch = augmented(aug, x, epoch=2, n=1000)
    alone = augmented(augmenter(spec, shape=(60, 70)), x[[3]], epoch=2, samples=[3], n=1000)
    np.testing.assert_array_equal(alone[0], batch[3])
    assert not np.allclose(batch, x, atol=1)
    big = augmenter(spec, shape=(500, 500, 3))
    assert big.chunk == 1 and big.padded.nbytes < 4 << 20  # a 500x500 colour image at a time


def test_uniform_numbers_look_uniform_and_independent():
    u = uniform_numbers(12345, np.arange(200000, dtype=np.uint64))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.003 and abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


def test_elastic_fields_are_smooth_and_bounded_by_alpha():
    aug = augmenter([{"type": "elastic", "alpha": 30.0, "sigma": 3.0}], shape=(28, 28))
    field = aug._elastic_field(np.arange(50), key=7)
    assert field.shape == (50, 2, 28, 28)
    assert 0.3 < np.abs(field).max() <= 30
    steps = np.abs(np.diff(field, axis=-1)).mean()
    assert steps < np.abs(field).mean() / 3  # neighbours move together
    x = images(k=4, shape=(28, 28))
    moved = augmented(aug, x)
    assert not np.allclose(moved, x, atol=1)
    small = augmented(augmenter([{"type": "elastic", "alpha": 0.01, "sigma": 3.0}], shape=(28, 28)), x)
    np.testing.assert_allclose(small, x, atol=3)


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "nearest", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("name, ours, theirs", [
    ("RandomZoom", {"type": "random_zoom", "height_factor": [1, 1], "width_factor": [0.9, 0.9]}, ((1, 1), (0.9, 0.9))),
    ("RandomTranslation", {"type": "random_translation", "height_factor": [0.9, 0.9], "width_factor": [-1, -1]},
     ((0.9, 0.9), (-1, -1))),
])
def test_points_far_outside_the_image_read_what_keras_reads(fill_mode, interpolation, name, ours, theirs):
    """Zoomed out twice, or shifted by nearly the image: source points up to an image's size
    beyond the edge, moved into the two-pixel border (folded, for reflect and wrap)."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"
    keras = pytest.importorskip("keras")
    layer = getattr(keras.layers, name)(*theirs, fill_mode=fill_mode, interpolation=interpolation, fill_value=3.0)
    x = images()
    want = np.asarray(layer(x[..., None].astype(np.float32), training=True))[..., 0]
    aug = augmenter([ours], fill_mode=fill_mode, fill_value=3.0, interpolation=interpolation)
    got = augmented(aug, x)
    assert aug.padded.shape[1:3] == (12 + 4, 17 + 4)
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=0)


def test_a_huge_elastic_sigma_smooths_within_the_image_and_allocates_little():
    aug = augmenter([{"type": "elastic", "alpha": 34.0, "sigma": 1e7}], shape=(28, 28))
    field = aug._elastic_field(np.arange(3), key=1)
    assert np.isfinite(field).all() and np.ptp(field[0, 0]) < 0.01 * 34  # all but flat


# ---------------------------------------------------------------- the config


def config(augment, dataset=None):
    with open("configs/mnist.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["augment"] = augment
    if dataset:
        cfg["data"] = {"dataset": dataset, "path": "x"}
    return cfg


def test_the_config_fills_keras_defaults_in():
    cfg = resolve(config({"transforms": [{"type": "random_zoom", "height_factor": 0.1}, "elastic"]}))
    assert cfg["augment"] == {"transforms": [{"type": "random_zoom", "height_factor": 0.1, "width_factor": None},
                                             {"type": "elastic", "alpha": 34.0, "sigma": 4.0}],
                              "fill_mode": "reflect", "fill_value": 0.0, "interpolation": "bilinear"}


@pytest.mark.parametrize("augment, dataset, message", [
    ({"transforms": [{"type": "random_rotation"}]}, None,
     "augment.transforms[0].factor: is required for random_rotation"),
    ({"transforms": [{"type": "random_rotation", "factor": -0.1}]}, None,
     "augment.transforms[0].factor: must be a number f >= 0 (meaning [-f, f]) or a pair [lower, upper], got -0.1"),
    ({"transforms": [{"type": "random_translation", "height_factor": [0.2, 0.1], "width_factor": 0}]}, None,
     "augment.transforms[0].height_factor: must have lower <= upper, got [0.2, 0.1]"),
    ({"transforms": [{"type": "random_translation", "height_factor": 1.5, "width_factor": 0}]}, None,
     "augment.transforms[0].height_factor: a number f means [-f, f], which must lie in [-1, 1]; got 1.5"),
    ({"transforms": [{"type": "random_rotation", "factor": float("nan")}]}, None,
     "augment.transforms[0].factor: must be a finite number, got nan"),
    ({"transforms": [{"type": "random_zoom", "height_factor": [-1, 0]}]}, None,
     "augment.transforms[0].height_factor: must be in (-1, 1], got -1 (in [-1, 0])"),
    ({"transforms": ["elastic", {"type": "random_rotation", "factor": 0.1}]}, None,
     "augment.transforms[0]: elastic must be the last transform"),
    ({"transforms": [{"type": "random_rotate", "factor": 0.1}]}, None,
     "augment.transforms[0].type: unknown transform 'random_rotate' (did you mean 'random_rotation'?)"),
    ({"transforms": []}, None, "augment.transforms: must be a non-empty list"),
    ({"transforms": ["elastic"], "fill_mode": "mirror"}, None, "augment.fill_mode: unknown fill_mode 'mirror'"),
    (True, None, "augment: must be a mapping with transforms (or null: none), got True"),
    ({"transforms": ["elastic"]}, "csv", "augment: is for images (mnist, fashion_mnist, image_folder), not "
                                         "dataset 'csv'"),
])
def test_config_errors_name_the_key_and_what_is_allowed(augment, dataset, message):
    with pytest.raises(ConfigError) as error:
        resolve(config(augment, dataset))
    assert message in str(error.value)
