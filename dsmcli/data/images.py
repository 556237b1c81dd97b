"""``images``: a local folder of PNG/JPEG files, read with Pillow — never downloaded.

``path`` is a directory searched recursively for ``.png``, ``.jpg`` and ``.jpeg`` files (any
case; names starting with ``.`` — hidden files and folders, macOS ``._*`` forks — and files with
other extensions are ignored). Labels come from the folder layout: when the images lie in
first-level sub-folders, each sub-folder is a class, labels 0…K−1 in the sorted order of the
folder names (the ``ImageFolder`` convention; everything below a class folder belongs to it);
images directly in ``path`` carry no labels. A single class folder gives no labels either (one
class says nothing), and a layout that mixes both, or a class folder with no images, is refused.

Each image is scaled so that it covers ``size`` [H, W] (its shorter side, relative to the
target's, becomes the target's), centre-cropped to H × W (one Lanczos resampling of the crop
box, so the crop is exact), and converted to grey (``channels: 1``, Pillow's ``L``) or ``RGB``
(``channels: 3``; alpha is dropped, 16-bit grey is reduced to 8 bits). JPEG orientation tags
are applied first. Pixels are scaled from 0…255 to [0, 1] and flattened in H, W, C order
(NHWC); ``image_shape`` is (H, W) for one channel, (H, W, 3) for three, and ``quantization``
the width of one 8-bit level, 1/255. A file that Pillow cannot decode (corrupt, truncated, not
an image despite its name) is refused with its path: nothing is skipped silently.

``limit`` keeps that many images, a seeded subset stratified over the classes (only those are
decoded); train and test are split by a seeded stratified permutation (``test_fraction``,
``seed``), as ``digits`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from dsmcli.data.base import Dataset
from dsmcli.errors import UserError, quote
from dsmcli.section import FilePath, Section

IMAGES = True  # rows are flattened images (the default networks of some objectives are convolutional)

EXTENSIONS = (".png", ".jpg", ".jpeg")
HINT = ("data.kind images reads a directory of PNG/JPEG files (in class sub-folders for labels: "
        "DIR/<class>/*.png)")


class Config(Section):
    kind: Literal["images"] = "images"
    path: FilePath
    size: tuple[PositiveInt, PositiveInt]  # [H, W] of every image after resizing and cropping
    channels: Literal[1, 3] = 3  # 1: grey (Pillow's L), 3: RGB
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: NonNegativeInt = 0  # seeds the split and the subset of ``limit`` (not the experiment)
    limit: int | None = Field(None, ge=2)  # at most this many images (a seeded, stratified subset)
    holdout_class: NonNegativeInt | None = None  # removed from training (anomaly detection); needs labels
    labels_per_class: PositiveInt | None = None  # only this many training labels per class are used (semi-supervised)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image(name: str) -> bool:
    return _visible(name) and name.lower().endswith(EXTENSIONS)


def _images_under(folder: Path) -> list[Path]:
    """The image files anywhere below ``folder`` (hidden folders skipped), sorted by path."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if _visible(d)]
        out.extend(Path(root) / f for f in files if _is_image(f))
    return sorted(out)


def scan(path: str) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """(image files, their labels or None, the class names) of an image directory, in a fixed
    order (classes sorted by name, files by path within each)."""
    root = Path(path)
    if not root.is_dir():
        from dsmcli.fsio import regular_file_problem

        problem = regular_file_problem(root)
        what = "is a file, not a directory" if problem is None else problem
        raise UserError(f"data.path: '{path}' {what}; {HINT}")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
        top = [root / e.name for e in entries if e.is_file() and _is_image(e.name)]
        folders = [e.name for e in entries if e.is_dir() and _visible(e.name)]
        classes = {name: _images_under(root / name) for name in folders}
    except OSError as e:
        raise UserError(f"data.path: cannot list '{path}': {e.strerror or e}") from None
    labelled = {name: files for name, files in classes.items() if files}
    if top and labelled:
        raise UserError(f"data.path: '{path}' has images both directly in it ({len(top)}) and in the sub-folders "
                        f"{', '.join(repr(n) for n in list(labelled)[:5])}; put every image in a class sub-folder "
                        f"(labelled) or all directly in the directory (unlabelled)")
    if top:
        return top, None, []
    if not labelled:
        raise UserError(f"data.path: '{path}' has no .png, .jpg or .jpeg files (searched recursively); {HINT}")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise UserError(f"data.path: the sub-folder '{quote(empty[0], 80)}' of '{path}' has no .png, .jpg or .jpeg "
                        f"files; every first-level sub-folder is a class: remove it or add its images")
    if len(labelled) == 1:
        return next(iter(labelled.values())), None, []
    names = list(labelled)  # sorted already
    files = [f for name in names for f in labelled[name]]
    labels = np.concatenate([np.full(len(labelled[name]), k, np.int32) for k, name in enumerate(names)])
    return files, labels, names


def _quotas(counts: np.ndarray, k: int) -> np.ndarray:
    """``k`` split over groups in proportion to ``counts`` (largest remainders; none above its count)."""
    exact = k * counts / counts.sum()
    q = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - q), kind="stable")
    q[order[: k - int(q.sum())]] += 1
    return q


def stratified_mask(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask choosing ``k`` rows at random, each class in proportion to its size."""
    classes, inverse = np.unique(y, return_inverse=True)
    mask = np.zeros(len(y), bool)
    for c, q in enumerate(_quotas(np.bincount(inverse, minlength=len(classes)), k)):
        rows = np.flatnonzero(inverse == c)
        mask[rng.permutation(rows)[:q]] = True
    return mask


def _selected(cfg: Config) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """``scan`` restricted to the ``limit`` subset."""
    files, labels, names = scan(cfg.path)
    if cfg.limit is not None and cfg.limit < len(files):
        groups = labels if labels is not None else np.zeros(len(files), np.int32)
        keep = stratified_mask(groups, cfg.limit, np.random.default_rng([cfg.seed, 1]))
        files = [f for f, k in zip(files, keep) if k]
        labels = None if labels is None else labels[keep]
    return files, labels, names


def source_files(cfg: Config) -> list[Path]:
    """The files ``build`` reads (recorded in the run's meta.json)."""
    return _selected(cfg)[0]


NBYTES_FIX = "use fewer images (data.limit) or a smaller data.size"


def nbytes(cfg: Config) -> int | None:
    """The 8-bit pixels, their float32 rows and the train/test copies (9 bytes per value)."""
    try:
        n = len(source_files(cfg))
    except UserError:
        return None  # build reports what is wrong with the directory
    return 9 * n * cfg.size[0] * cfg.size[1] * cfg.channels


def _eight_bit(img):
    """16-bit grey (``I;16``, ``I``) reduced to 8 bits (Pillow's ``convert`` would clip it)."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    return img


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file as uint8 (H, W, C): covered, centre-cropped, converted (see the module)."""
    from PIL import Image, ImageOps

    h, w = size
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            w0, h0 = img.size
            # JPEG: decode at the smallest DCT scale that still covers the target in any orientation
            cover = max(h, w) / max(1, min(w0, h0))
            img.draft(mode, (int(np.ceil(w0 * cover)), int(np.ceil(h0 * cover))))
            img = ImageOps.exif_transpose(img)
            img = _eight_bit(img).convert(mode)
            w0, h0 = img.size
            scale = max(h / h0, w / w0)  # the image covers h × w at this scale
            cw, ch = w / scale, h / scale  # the crop box in the source's pixels
            box = ((w0 - cw) / 2, (h0 - ch) / 2, (w0 + cw) / 2, (h0 + ch) / 2)
            out = img.resize((w, h), Image.Resampling.LANCZOS, box=box)
            pixels = np.asarray(out, np.uint8)
    except Image.DecompressionBombError as e:
        raise UserError(f"data.path: '{path}' is too large to decode safely ({e}); shrink or remove it") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 — a malformed file can fail anywhere inside Pillow
        # UnidentifiedImageError (an OSError): not an image; OSError: truncated; SyntaxError: a broken PNG chunk
        reason = quote(str(e).replace(str(path), "").strip(" :'\"") or type(e).__name__, 120)
        raise UserError(f"data.path: cannot read image '{path}' ({reason}); replace or remove the file") from None
    return pixels.reshape(h, w, channels)


def split(y: np.ndarray | None, n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): a seeded permutation with ``round(test_fraction · n)`` (at least 1,
    at most n − 1) test rows, stratified by ``y`` when given."""
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    rng = np.random.default_rng(seed)
    is_test = stratified_mask(y if y is not None else np.zeros(n, np.int32), n_test, rng)
    order = rng.permutation(n)
    return order[~is_test[order]], order[is_test[order]]


def build(cfg: Config) -> Dataset:
    files, labels, names = _selected(cfg)
    if len(files) < 2:
        raise UserError(f"data.path: '{cfg.path}' has one image file; a train/test split needs at least 2")
    if cfg.holdout_class is not None and (labels is None or cfg.holdout_class >= len(names)):
        have = (f"its classes are 0…{len(names) - 1} ({', '.join(names[:10])})" if labels is not None
                else "its images have no labels")
        raise UserError(f"data.holdout_class: {cfg.holdout_class} is not a class of '{cfg.path}'; {have}")
    h, w = cfg.size
    pixels = np.empty((len(files), h, w, cfg.channels), np.uint8)
    for i, f in enumerate(files):
        pixels[i] = read_image(f, (h, w), cfg.channels)
    x = np.divide(pixels.reshape(len(files), -1), np.float32(255.0), dtype=np.float32)
    del pixels
    train, test = split(labels, len(x), cfg.test_fraction, cfg.seed)
    y_train, y_test = (None, None) if labels is None else (labels[train], labels[test])
    x_train, x_test = x[train], x[test]
    if cfg.holdout_class is not None:
        keep = y_train != cfg.holdout_class
        x_train, y_train = x_train[keep], y_train[keep]
    shape = (h, w) if cfg.channels == 1 else (h, w, cfg.channels)
    return Dataset("images", x_train, x_test, y_train, y_test, image_shape=shape, holdout_class=cfg.holdout_class,
                   quantization=np.full(x.shape[1], 1 / 255.0, np.float32))
