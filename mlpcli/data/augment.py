"""Image augmentation for training: the config's ``augment:`` section.

Random rotation, zoom and translation mean what Keras's ``RandomRotation``,
``RandomZoom`` and ``RandomTranslation`` mean (the same factors, matrices about the
centre ``((W-1)/2, (H-1)/2)``, fill modes and interpolation), and ``elastic`` is
Simard et al.'s (2003) distortion: a field of uniform noise in [-1, 1] smoothed by a
Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels. Where Keras resamples once
per layer, the listed transforms are composed into one map from each output pixel to
the source image, which is sampled once (``fill_mode``, ``fill_value`` and
``interpolation`` are shared).

Each training image is augmented when its batch is gathered, in the process that trains
on it, on the pixels as stored (``fill_value`` is a pixel value), before the model's
scaling. Each epoch draws a bank of transforms (``Augmenter.bank_size``, or one per image
when there are fewer), and each image uses one of them, chosen at random: a uniformly
chosen member of a fresh sample is itself a draw from the factors' distribution, so every
image's transform still is. The random numbers are a hash of the run's seed, the epoch and
the index (``uniform_numbers``), so an augmented batch is the same with any number of
processes and after --resume, and nothing needs saving.

Vectorized, and cheap per batch: the bank holds every output pixel's source pixel (and
fractions, for bilinear) in a padded image, computed for the whole epoch at once; a batch
gathers its images' rows of it, copies the images into a padded float32 buffer whose
border holds the fill (wide enough that no source point falls outside), gathers the one
or four source pixels of every output pixel and interpolates, a chunk of images at a time.
"""

from dataclasses import dataclass

import numpy as np

from mlpcli.errors import DataError
from mlpcli.nn.spec import Component, Param, Registry, choice, declare, factor, number

FILL_MODES = ("reflect", "constant", "nearest", "wrap")
INTERPOLATIONS = ("bilinear", "nearest")
# the resampling every transform shares (Keras gives each layer its own; one resampling needs one)
SETTINGS = Component("augment", "How the transformed images are resampled.", params=(
    Param("fill_mode", "reflect", choice(*FILL_MODES),
          "points outside the image: `reflect` (d c b a | a b c d | d c b a), `constant` (fill_value), "
          "`nearest` (a a | a b c d | d d), `wrap` (a b c d | a b c d | a b c d)"),
    Param("fill_value", 0.0, number(), "the pixel value (as stored, e.g. 0-255) `constant` fills with"),
    Param("interpolation", "bilinear", choice(*INTERPOLATIONS), "how a pixel between pixels is read"),
))


@declare(Component("random_rotation", "rotates by a random angle of `factor` x 360 degrees (positive: "
                   "counter-clockwise)", keras="RandomRotation", params=(
                       Param("factor", None, factor(), "a fraction of a full turn", required=True),)))
def _rotation(numbers, spec, maps, height, width):
    """Into ``maps`` (k, 2, 3): Keras's rotation matrices (about the centre, added by the caller)."""
    angle = _uniform(numbers[:, 0], spec["factor"]) * (2 * np.pi)
    maps[:, 0, 0] = maps[:, 1, 1] = np.cos(angle)
    maps[:, 1, 0] = np.sin(angle)
    maps[:, 0, 1] = -maps[:, 1, 0]


@declare(Component("random_zoom", "zooms by a random amount (positive: out, negative: in)", keras="RandomZoom",
                   params=(Param("height_factor", None, factor(-1, 1, "right"),
                                 "vertical zoom, a fraction of the height", required=True),
                           Param("width_factor", None, factor(-1, 1, "right", nullable=True),
                                 "horizontal zoom (null: the vertical one, keeping the aspect ratio)"))))
def _zoom(numbers, spec, maps, height, width):
    maps[:, 1, 1] = 1.0 + _uniform(numbers[:, 0], spec["height_factor"])
    maps[:, 0, 0] = maps[:, 1, 1] if spec["width_factor"] is None else \
        1.0 + _uniform(numbers[:, 1], spec["width_factor"])


@declare(Component("random_translation", "shifts by a random fraction of the height and width (positive: "
                   "down, right)", keras="RandomTranslation", params=(
                       Param("height_factor", None, factor(-1, 1), "vertical shift, a fraction of the height",
                             required=True),
                       Param("width_factor", None, factor(-1, 1), "horizontal shift, a fraction of the width",
                             required=True))))
def _translation(numbers, spec, maps, height, width):
    maps[:, 0, 0] = maps[:, 1, 1] = 1.0
    maps[:, 0, 2] = -width * _uniform(numbers[:, 1], spec["width_factor"])
    maps[:, 1, 2] = -height * _uniform(numbers[:, 0], spec["height_factor"])


@declare(Component("elastic", "moves each pixel by a smooth random field (Simard et al. 2003); must come "
                   "last", params=(
                       Param("alpha", 34.0, number(0, None, "neither"),
                             "the field's scale in pixels: smoothed noise (much smaller than 1) times alpha"),
                       Param("sigma", 4.0, number(0, None, "neither"),
                             "the smoothing Gaussian's standard deviation, in pixels (larger: smoother, smaller "
                             "shifts)"))))
def _elastic(numbers, spec, maps, height, width):
    """No matrix (the identity): the field is ``Augmenter._elastic_field``."""
    maps[:, 0, 0] = maps[:, 1, 1] = 1.0


TRANSFORMS = Registry("transform", [_rotation, _zoom, _translation, _elastic])
# how many random numbers each transform draws per image, and whether its matrix is about the centre
_DRAWS = {"random_rotation": 1, "random_zoom": 2, "random_translation": 2, "elastic": 0}
_ABOUT_CENTRE = ("random_rotation", "random_zoom")
# the padded images' border: a source point is moved into it (_into_border), and bilinear reads
# one pixel beyond the point
PAD = 2


def _uniform(u, value):
    """``u`` in [0, 1) spread over a factor's [lower, upper] (a number f: [-f, f])."""
    lower, upper = (-value, value) if isinstance(value, (int, float)) else value
    return lower + (upper - lower) * u


# ---------------------------------------------------------------- random numbers

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z):
    """splitmix64's finalizer on uint64 arrays: a bijection whose outputs look independent
    (array products wrap around silently, as they are meant to)."""
    z = z ^ (z >> np.uint64(30))
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _mix_int(z):
    """``_mix`` of one Python integer."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK
    return z ^ (z >> 31)


def uniform_numbers(key, counters):
    """Float64 in [0, 1), one per uint64 ``counters``: a hash of ``key`` (an integer) and the counter."""
    z = counters * np.uint64(_GOLDEN)
    z += np.uint64(key)
    return (_mix(z) >> np.uint64(11)) * (1.0 / (1 << 53))


# ---------------------------------------------------------------- the resampling

class Augmenter:
    """Augments images of shape ``image_shape`` ((H, W) or (H, W, C)) as ``spec`` (a resolved
    ``augment:`` section) says, with random numbers from ``seed``."""

    def __init__(self, spec, image_shape, seed):
        self.height, self.width = image_shape[:2]
        self.channels = image_shape[2] if len(image_shape) == 3 else 1
        self.transforms = [(TRANSFORMS.lookup(t["type"]), t) for t in spec["transforms"]]
        self.draws = sum(_DRAWS[t["type"]] for _, t in self.transforms)
        self.fill_mode, self.interpolation = spec["fill_mode"], spec["interpolation"]
        self.fill_value = np.float32(spec["fill_value"])
        # the fifth stream of the seed: the first four are random_streams' (weights, dropout, ...)
        self.key = int(np.random.SeedSequence(seed, spawn_key=(4,)).generate_state(1, np.uint64)[0])
        self.centre = np.array([(self.width - 1) / 2, (self.height - 1) / 2])
        # every output pixel's (x, y, 1): the maps turn them into source points with one product
        grid_y, grid_x = np.divmod(np.arange(self.height * self.width, dtype=np.float32), self.width)
        self.grid = np.stack([grid_x, grid_y, np.ones_like(grid_x)])
        elastic = next((t for _, t in self.transforms if t["type"] == "elastic"), None)
        self.alpha = elastic["alpha"] if elastic else 0.0
        self.smoothing = elastic and (_gaussian_matrix(self.height, elastic["sigma"]),
                                      _gaussian_matrix(self.width, elastic["sigma"]))
        pixels = self.height * self.width
        if (self.height + 2 * PAD) * (self.width + 2 * PAD) >= 1 << 24:  # see _source_points
            raise DataError(f"augment: images of {self.height}x{self.width} pixels are too large to augment")
        # each epoch draws this many transforms (or one per image, for fewer images), and each image
        # uses one of them at random: indices and fractions of 12 bytes a pixel, in at most 8 MiB (a
        # bank much larger than the cache makes gathering its rows slower than computing them). For
        # images too large for a bank of 256, each image's transform is worked out with its batch.
        bank = (8 << 20) // (12 * pixels)
        self.bank_size = min(bank, 4096) if bank >= 256 else None
        # images at a time: at most 64, and their buffers (about 36 bytes a pixel) in 16 MiB
        self.chunk = max(1, min(64, (16 << 20) // (36 * pixels * self.channels)))
        self._allocate()

    def features(self, features, epoch):
        """``features`` (an ``mlpcli.data.features.Features``) as seen in epoch ``epoch``."""
        return AugmentedFeatures(self, features, epoch)

    def epoch_keys(self, epoch):
        """The keys of epoch ``epoch``'s random numbers: (the transforms', the images' choice of
        one, the elastic fields')."""
        key = _mix_int(self.key ^ _mix_int((epoch + _GOLDEN) & _MASK))
        return tuple(_mix_int(key + purpose & _MASK) for purpose in (1, 2, 3))

    def maps(self, samples, keys):
        """(k, 2, 3) float64 maps from output to source pixel coordinates (x, y) of ``samples``."""
        counters = samples.astype(np.uint64)[:, None] * np.uint64(max(self.draws, 1))
        numbers = uniform_numbers(keys[0], counters + np.arange(self.draws, dtype=np.uint64))
        combined, matrices = None, np.zeros((len(samples), 2, 3))
        column = 0
        for implementation, spec in self.transforms:
            count = _DRAWS[spec["type"]]
            matrices[:] = 0.0
            implementation(numbers[:, column:column + count], spec, matrices, self.height, self.width)
            column += count
            if spec["type"] in _ABOUT_CENTRE:  # c + L (p - c) = L p + (c - L c)
                matrices[:, :, 2] = self.centre - matrices[:, :, :2] @ self.centre
            # Keras's order: the first listed is applied first, so its map is outermost
            if combined is None:
                combined = matrices.copy()
            else:
                translation = combined[:, :, :2] @ matrices[:, :, 2:] + combined[:, :, 2:]
                combined[:, :, :2] = combined[:, :, :2] @ matrices[:, :, :2]
                combined[:, :, 2:] = translation
        return combined

    def _elastic_field(self, samples, key):
        """(k, 2, H, W) float32 shifts (x, y) in pixels: smoothed uniform noise times alpha."""
        size = 2 * self.height * self.width
        counters = samples.astype(np.uint64)[:, None] * np.uint64(size) + np.arange(size, dtype=np.uint64)
        noise = (uniform_numbers(key, counters) * 2.0 - 1.0).astype(np.float32)
        noise = noise.reshape(len(samples), 2, self.height, self.width)
        along_y, along_x = self.smoothing
        field = np.matmul(np.matmul(along_y, noise), along_x.T)  # the Gaussian, one axis at a time
        field *= np.float32(self.alpha)
        return field

    def epoch_bank(self, n, epoch):
        """The transforms of epoch ``epoch`` for ``n`` training images: a ``Bank``."""
        keys = self.epoch_keys(epoch)
        if self.bank_size is None:
            return Bank(keys)  # drawn with each batch
        size = min(n, self.bank_size)
        choice = np.arange(n) if size == n else \
            (uniform_numbers(keys[1], np.arange(n, dtype=np.uint64)) * size).astype(np.int32)
        return Bank(keys, choice, *self._source_points(np.arange(size), keys))

    def _source_points(self, ids, keys):
        """Where the output pixels of transforms ``ids`` read their padded source image: int32
        (k, H*W) flat indices of each pixel's (top-left) source pixel, and float32 (k, 2, H*W)
        fractions past it in x and y (None for nearest interpolation)."""
        maps = self.maps(ids, keys)
        coordinates = np.empty((len(ids), 2, self.height * self.width), np.float32)
        for start in range(0, len(ids), 256):  # the elastic fields a few at a time (each is 2 H W numbers)
            part = slice(start, start + 256)
            m = maps[part].astype(np.float32)
            np.matmul(m, self.grid, out=coordinates[part])
            if self.alpha:  # the field moves the output grid before the map: M (p + d) = M p + M d
                field = self._elastic_field(ids[part], keys[2])
                coordinates[part] += np.einsum("kij,kjp->kip", m[:, :, :2], field.reshape(len(field), 2, -1))
        if self.interpolation == "nearest":  # Keras rounds, then finds the pixel
            np.rint(coordinates, out=coordinates)
        for axis, size in enumerate((self.width, self.height)):
            _into_border(coordinates[:, axis], size, self.fill_mode)
        coordinates += PAD  # in the padded image
        corner = coordinates if self.interpolation == "nearest" else np.floor(coordinates)
        fractions = None if self.interpolation == "nearest" else coordinates - corner
        # exact in float32: a padded image has under 2 ** 24 pixels (checked in __init__)
        index = corner[:, 1] * (self.width + 2 * PAD) + corner[:, 0]
        return index.astype(np.int32), fractions

    def apply(self, raw, samples, bank, out):
        """Augmented float32 pixels of images ``raw`` (k, H, W[, C]) (samples ``samples`` of the
        training data, in the epoch of ``bank``) into ``out`` (k, H*W*C), a chunk of images at a
        time so that the work stays in the core's cache."""
        out = out.reshape(len(samples), -1)
        for start in range(0, len(samples), self.chunk):
            part = slice(start, start + self.chunk)
            k = len(samples[part])
            rows, index, value, other, fractions = (buffer[:k] for buffer in self.work)
            if bank.choice is None:  # this batch's images' own transforms
                rows, fractions = self._source_points(samples[part], bank.keys)
            else:
                entries = bank.choice.take(samples[part])
                bank.index.take(entries, axis=0, out=rows, mode="clip")  # (clip: no checking copy)
                if bank.fractions is not None:
                    bank.fractions.take(entries, axis=0, out=fractions, mode="clip")
            np.add(rows, self.offsets[:k], out=index)  # each image's first pixel in the padded buffer
            self._resample(self._padded(raw[part]), index, fractions, out[part].reshape(value.shape))

    def _resample(self, padded, index, fractions, out):
        """Into ``out``: the padded images' pixels at ``index`` (nearest), or interpolated
        between the four from ``index`` on by ``fractions`` (bilinear)."""
        pixels = padded.reshape(-1) if self.channels == 1 else padded.reshape(-1, self.channels)
        if self.interpolation == "nearest":
            np.take(pixels, index, axis=0, out=out, mode="clip")  # every index is in range
            return
        value, other = (buffer[:len(index)] for buffer in self.work[2:4])
        columns = padded.shape[2]
        fx, fy = fractions[:, 0], fractions[:, 1]
        if self.channels > 1:
            fx, fy = fx[..., None], fy[..., None]
        # top = a + fx (b - a), bottom = c + fx (d - c), out = top + fy (bottom - top)
        np.take(pixels, index, axis=0, out=out, mode="clip")
        np.take(pixels[1:], index, axis=0, out=value, mode="clip")
        value -= out
        value *= fx
        out += value
        np.take(pixels[columns:], index, axis=0, out=value, mode="clip")
        np.take(pixels[columns + 1:], index, axis=0, out=other, mode="clip")
        other -= value
        other *= fx
        value += other
        value -= out
        value *= fy
        out += value

    def _padded(self, raw):
        """``raw`` as float32 (k, H+2 PAD, W+2 PAD, C), its border filled as ``fill_mode`` says."""
        k = len(raw)
        raw = raw.reshape(k, self.height, self.width, self.channels)
        padded = self.padded[:k]
        if self.fill_mode == "constant":  # the border keeps its fill; only the images change
            padded[:, PAD:PAD + self.height, PAD:PAD + self.width] = raw
        else:
            padded[...] = raw.take(self.row_map, axis=1).take(self.column_map, axis=2)
        return padded

    def _allocate(self):
        k, rows, columns = self.chunk, self.height + 2 * PAD, self.width + 2 * PAD
        self.padded = np.full((k, rows, columns, self.channels), self.fill_value, np.float32)
        self.row_map = _index_fixer(self.fill_mode, self.height, PAD)
        self.column_map = _index_fixer(self.fill_mode, self.width, PAD)
        self.offsets = (np.arange(k, dtype=np.intp) * (rows * columns))[:, None]
        pixels = self.height * self.width
        channels = (self.channels,) if self.channels > 1 else ()
        # intp indices: take would convert int32 ones (the bank's, half the memory) on every call
        self.work = (np.empty((k, pixels), np.int32), np.empty((k, pixels), np.intp),
                     np.empty((k, pixels) + channels, np.float32), np.empty((k, pixels) + channels, np.float32),
                     np.empty((k, 2, pixels), np.float32))


def _into_border(coordinates, size, fill_mode):
    """Source coordinates along an axis of ``size`` pixels moved, in place, to where a border of
    ``PAD`` pixels holds what they read, exactly (nearest interpolation's points are whole).
    constant and nearest: beyond the border's first pixel every point reads the fill (or the
    edge), so clipping changes nothing; reflect: folded about -0.5 and size - 0.5, which is
    what Keras's reflected indices come to between pixels; wrap: taken modulo the size."""
    if fill_mode in ("constant", "nearest"):
        np.clip(coordinates, -PAD, size - 2 + PAD, out=coordinates)
    elif fill_mode == "wrap":
        np.mod(coordinates, size, out=coordinates)
    else:
        coordinates += 0.5
        np.mod(coordinates, 2 * size, out=coordinates)
        np.minimum(coordinates, 2 * size - coordinates, out=coordinates)
        coordinates -= 0.5


def _index_fixer(mode, size, pad):
    """Which pixel of a row (or column) of ``size`` each of the padded ``size + 2 pad`` positions
    reads, as Keras's map_coordinates index fixers say (constant mode never reads the border)."""
    index = np.arange(-pad, size + pad)
    if mode in ("nearest", "constant"):
        return np.clip(index, 0, size - 1)
    if mode == "wrap":
        return index % size
    period = 2 * size  # reflect: (d c b a | a b c d | d c b a)
    folded = index % period
    return np.where(folded < size, folded, period - 1 - folded)


def _gaussian_matrix(size, sigma):
    """(size, size) float32 smoothing along one axis: row i holds a Gaussian about i, cut at 3
    sigma and reflected at the edges, summing to 1 (so a field of values in [-1, 1] stays there)."""
    radius = max(1, min(int(3 * sigma), 4 * size))  # reflected copies beyond that change nothing that matters
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((size, size))
    fix = _index_fixer("reflect", size, radius)
    for i in range(size):
        np.add.at(matrix[i], fix[i + offsets + radius], weights)
    return matrix.astype(np.float32)


def from_config(cfg, image_shape):
    """The Augmenter a resolved config asks for, for training images of ``image_shape`` as
    stored; None when it asks for none."""
    if cfg["augment"] is None:
        return None
    if len(image_shape) not in (2, 3) or len(image_shape) == 3 and image_shape[2] not in (1, 3):
        raise DataError(f"augment: needs images (height x width, or x 1 or 3 channels), and the training "
                        f"samples have shape {list(image_shape)}")
    return Augmenter(cfg["augment"], tuple(image_shape), cfg["seed"])


@dataclass
class Bank:
    """An epoch's transforms, ready to sample with: ``size`` of them, each training image using
    the one ``choice`` names; or, for images too large for a bank, just the epoch's keys."""

    keys: tuple  # the epoch's ``epoch_keys``
    choice: np.ndarray | None = None  # int32 (n,): each training image's transform
    index: np.ndarray | None = None  # int32 (size, H*W): each output pixel's (top-left) source pixel, padded
    fractions: np.ndarray | None = None  # float32 (size, 2, H*W): how far past it, in x and y (None: nearest)


class AugmentedFeatures:
    """``Features`` whose ``take(idx, out)`` gives the rows augmented for one epoch."""

    def __init__(self, augmenter, features, epoch):
        self.augmenter, self.features = augmenter, features
        self.bank = augmenter.epoch_bank(len(features), epoch)
        self.shape = features.shape

    def __len__(self):
        return len(self.features)

    def take(self, idx, out):
        features = self.features
        raw = features.take_raw(idx)
        self.augmenter.apply(raw, np.asarray(idx), self.bank, out.reshape(len(idx), -1))
        if not features.identity:
            out *= features.scale
            if features.offset.any():
                out += features.offset
        return out
