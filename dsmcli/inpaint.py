"""Inpainting masks (``sample.inpaint``) and the conditions the inpainting samplers receive.

``known_mask`` marks the observed coordinates of one image (True) and the ``fraction`` to be
inpainted (False): ``left``/``right`` that share of the columns (rounded, at least one), ``top``/
``bottom`` of the rows, ``centre`` a centred rectangle of height and width √fraction of the
image's, ``random`` that many pixels chosen by ``seed``. Images of shape (H, W, C) share the
mask over channels; rows that are not images are read as one row of D pixels (``left``,
``right``, ``random``). Held-out images are the observations, the i-th particle conditioned on
test row i mod n_test.
"""

from __future__ import annotations

import numpy as np

from dsmcli.errors import UserError


def known_mask(cfg, image_shape, dim: int, seed: int) -> np.ndarray:
    shape = tuple(image_shape) if image_shape is not None else (1, dim)
    height, width = shape[0], shape[1]
    missing = np.zeros((height, width), bool)
    share = lambda size: min(size, max(1, int(round(cfg.fraction * size))))  # noqa: E731
    if image_shape is None and cfg.mask in ("top", "bottom", "centre"):
        raise UserError(f"sample.inpaint.mask: '{cfg.mask}' needs image data (rows and columns); for vectors use "
                        f"left, right or random")
    if cfg.mask == "left":
        missing[:, : share(width)] = True
    elif cfg.mask == "right":
        missing[:, width - share(width):] = True
    elif cfg.mask == "top":
        missing[: share(height)] = True
    elif cfg.mask == "bottom":
        missing[height - share(height):] = True
    elif cfg.mask == "centre":
        h = max(1, int(round(np.sqrt(cfg.fraction) * height)))
        w = max(1, int(round(np.sqrt(cfg.fraction) * width)))
        top, left = (height - h) // 2, (width - w) // 2
        missing[top : top + h, left : left + w] = True
    else:
        rng = np.random.default_rng(seed)
        flat = missing.reshape(-1)
        flat[rng.choice(flat.size, share(flat.size), replace=False)] = True
    if missing.all():
        raise UserError(f"sample.inpaint.fraction: {cfg.fraction} leaves no pixel observed; lower it")
    if len(shape) == 3:
        missing = np.repeat(missing[:, :, None], shape[2], axis=2)
    return ~missing.reshape(-1)


def condition(cfg, data, n: int, seed: int):
    """(observations (n, D), known (n, D) bool) for ``n`` particles."""
    if data.image_shape is None and data.dim < 2:
        raise UserError("sample.inpaint: the data has one coordinate; nothing is left to condition on")
    known = known_mask(cfg, data.image_shape, data.dim, seed)
    y = np.asarray(data.x_test)[np.arange(n) % len(data.x_test)]
    return y.astype(np.float32), np.broadcast_to(known, y.shape).copy()
