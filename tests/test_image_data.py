"""Real image data: ``data.kind images`` (PNG/JPEG folders read with Pillow: shapes, scaling,
labels from class folders, the resize-and-crop geometry, the split, the errors) and ``data.kind
cifar10`` (both local formats, the CHW → HWC conversion, damaged files), the convolutional
networks on C channels, colour image plots, and train → sample → eval of an NCSN on a tiny RGB
folder from the command line."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dsmcli import data, experiment, plots
from dsmcli.cli import app
from dsmcli.config import validate
from dsmcli.data import cifar10, images
from dsmcli.errors import UserError
from dsmcli.models.conv_blocks import to_images, to_rows
from tests.conftest import write_config

runner = CliRunner()


def dsm(*args):
    return runner.invoke(app, [str(a) for a in args])


def build(spec: dict, objective=None):
    return data.build(validate({"name": "t", "data": spec, "objective": objective or {"kind": "dsm"}}, "t").data)


def level(i: int) -> int:
    """A distinct grey level per image (10 apart: identifiable after JPEG compression)."""
    return 15 + 10 * i


def write_classes(root: Path) -> dict[int, str]:
    """Three class folders (sorted: ant, bee, cat), flat images of distinct grey levels in PNG
    and JPEG of different sizes and modes, one nested folder; junk that must be ignored.
    Returns {grey level: class name}."""
    owner, i = {}, 0
    layout = {"cat": 4, "ant": 5, "bee": 6}
    modes = ["RGB", "L", "RGBA", "P"]
    for name, count in layout.items():
        for j in range(count):
            folder = root / name / ("deeper" if j == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            v = level(i)
            size = (20 + 7 * j, 14 + 3 * i)  # (width, height): landscape, portrait, odd sizes
            img = Image.new("RGB", size, (v, v, v))
            mode = modes[(i + j) % len(modes)]
            img = img.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else img.convert(mode)
            if j % 2:
                img.convert("RGB").save(folder / f"img{j}.JPG", quality=95)
            else:
                img.save(folder / f"img{j}.png")
            owner[v] = name
            i += 1
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "bee" / "._img0.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden: ignored
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes(b"junk")  # hidden folder: ignored
    return owner


# --------------------------------------------------------------------------- images
def test_class_folders_shapes_scaling_labels_and_split(tmp_path):
    owner = write_classes(tmp_path)
    ds = build({"kind": "images", "path": str(tmp_path), "size": [8, 12]})
    n = len(owner)
    assert ds.kind == "images" and ds.image_shape == (8, 12, 3) and ds.dim == 8 * 12 * 3
    assert ds.x_train.dtype == np.float32 and len(ds.x_train) + len(ds.x_test) == n
    assert len(ds.x_test) == round(0.2 * n) == 3
    x = np.concatenate([ds.x_train, ds.x_test])
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-4)  # 8-bit levels / 255
    np.testing.assert_array_equal(ds.quantization, np.full(ds.dim, 1 / 255, np.float32))
    classes = ["ant", "bee", "cat"]  # sorted folder names → 0, 1, 2
    y = np.concatenate([ds.y_train, ds.y_test])
    seen = []
    for row, label in zip(x, y):
        v = int(round(float(np.median(row)) * 255))
        match = min(owner, key=lambda g: abs(g - v))
        assert abs(match - v) <= 2 and owner[match] == classes[label]
        seen.append(match)
    assert sorted(seen) == sorted(owner)  # every image once: train and test are disjoint and complete
    assert sorted(np.unique(ds.y_test)) == [0, 1, 2]  # stratified: 3 test images, one per class
    grey = build({"kind": "images", "path": str(tmp_path), "size": [8, 12], "channels": 1})
    assert grey.image_shape == (8, 12) and grey.dim == 96
    np.testing.assert_array_equal(grey.y_test, ds.y_test)  # the same seeded split
    np.testing.assert_allclose(grey.x_test, ds.x_test.reshape(-1, 8, 12, 3)[..., 0].reshape(-1, 96), atol=2 / 255)
    again = build({"kind": "images", "path": str(tmp_path), "size": [8, 12]})
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    other = [build({"kind": "images", "path": str(tmp_path), "size": [8, 12], "seed": s}).x_test for s in (1, 2)]
    assert any(not np.array_equal(o, ds.x_test) for o in other)
    files = images.source_files(validate({"name": "t", "data": {"kind": "images", "path": str(tmp_path), "size": [8, 12]},
                                          "objective": {"kind": "dsm"}}, "t").data)
    assert len(files) == n and all(f.suffix.lower() in (".png", ".jpg") and not f.name.startswith(".") for f in files)


def test_resize_covers_the_target_then_crops_the_centre(tmp_path):
    def save(name, size, paint):
        img = Image.new("RGB", size, (0, 0, 0))
        img.paste(Image.new("RGB", paint[1], paint[2]), paint[0])
        img.save(tmp_path / name)
        return tmp_path / name

    # 64 wide × 32 high, left half white: scaled to 32 × 16, the centre 16 columns are half white
    wide = save("wide.png", (64, 32), ((0, 0), (32, 32), (255, 255, 255)))
    img = images.read_image(wide, (16, 16), 1)[..., 0] / 255
    assert img.shape == (16, 16)
    assert img[:, :7].min() > 0.97 and img[:, 9:].max() < 0.03  # (a left-aligned crop would be all white)
    # 32 wide × 64 high, top half white: rows are cropped the same way
    tall = save("tall.png", (32, 64), ((0, 0), (32, 32), (255, 255, 255)))
    img = images.read_image(tall, (16, 16), 1)[..., 0] / 255
    assert img[:7].min() > 0.97 and img[9:].max() < 0.03
    # a non-square target [8, 16] from a 32 × 32 square: scaled by 1/2, 4 rows cut at top and bottom
    square = save("square.png", (32, 32), ((0, 0), (32, 8), (255, 255, 255)))  # the top 8 rows white
    img = images.read_image(square, (8, 16), 1)[..., 0] / 255
    assert img.shape == (8, 16) and img[1:].max() < 0.03  # the white band lies outside the centre crop …
    assert img[0].max() < 0.1  # … (only the resampling filter's reach, as in resize-then-crop, touches row 0)
    # colour in H, W, C order: red left, blue right
    pix = np.zeros((10, 20, 3), np.uint8)
    pix[:, :10, 0] = pix[:, 10:, 2] = 255
    Image.fromarray(pix).save(tmp_path / "rb.png")
    img = images.read_image(tmp_path / "rb.png", (10, 20), 3) / 255
    assert img.shape == (10, 20, 3)
    assert img[:, :8, 0].min() > 0.97 and img[:, :8, 2].max() < 0.03 and img[:, 12:, 2].min() > 0.97
    # an upscaled small image keeps its content; 16-bit grey is scaled to 8 bits, not clipped
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(tmp_path / "g16.png")  # 32896 = 128 · 257
    assert np.all(images.read_image(tmp_path / "g16.png", (8, 8), 1) == 128)
    # a JPEG's orientation tag is applied: stored left-white, displayed rotated 90° (top white)
    stored = Image.open(wide).convert("RGB")
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    stored.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    img = images.read_image(tmp_path / "rot.jpg", (16, 16), 1)[..., 0] / 255
    assert img[:6].min() > 0.9 and img[10:].max() < 0.1


def test_unlabelled_folder_limit_and_memory_estimate(tmp_path):
    for i in range(10):
        Image.new("L", (9, 9), level(i)).save(tmp_path / f"{i:02d}.png")
    spec = {"kind": "images", "path": str(tmp_path), "size": [4, 4], "channels": 1, "test_fraction": 0.3}
    ds = build(spec)
    assert ds.y_train is None and ds.y_test is None and len(ds.x_test) == 3 and len(ds.x_train) == 7
    cfg = validate({"name": "t", "data": {**spec, "limit": 4}, "objective": {"kind": "dsm"}}, "t").data
    small = data.build(cfg)
    assert len(small.x_train) + len(small.x_test) == 4
    files = images.source_files(cfg)
    assert len(files) == 4 and files == sorted(files)
    levels = sorted(int(round(float(r[0]) * 255)) for r in np.concatenate([small.x_train, small.x_test]))
    assert levels == sorted(level(int(f.stem)) for f in files)  # exactly the files recorded are read
    assert data.estimated_bytes(cfg) == 9 * 4 * 16
    assert images.source_files(cfg) == files  # the subset is seeded
    # limit on class folders keeps the classes' proportions
    root = tmp_path / "classes"
    for name, count in (("a", 12), ("b", 4)):
        (root / name).mkdir(parents=True)
        for j in range(count):
            Image.new("L", (5, 5), 3 * j).save(root / name / f"{j}.png")
    picked = images.source_files(validate({"name": "t", "data": {"kind": "images", "path": str(root), "size": [4, 4],
                                                                   "limit": 8}, "objective": {"kind": "dsm"}}, "t").data)
    assert sorted(f.parent.name for f in picked) == ["a"] * 6 + ["b"] * 2


def test_folder_errors_name_the_field_and_the_file(tmp_path):
    spec = lambda path, **kw: {"kind": "images", "path": str(path), "size": [8, 8], **kw}  # noqa: E731
    with pytest.raises(UserError, match=r"data.path: '.*absent' does not exist; data.kind images reads a directory"):
        build(spec(tmp_path / "absent"))
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        build(spec(tmp_path / "file.png"))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hi")
    with pytest.raises(UserError, match=r"data.path: '.*empty' has no .png, .jpg or .jpeg files"):
        build(spec(empty))
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    for p in (mixed / "top.png", mixed / "a" / "x.png"):
        Image.new("L", (8, 8)).save(p)
    with pytest.raises(UserError, match=r"has images both directly in it \(1\) and in the sub-folders 'a'"):
        build(spec(mixed))
    (mixed / "top.png").unlink()
    (mixed / "b").mkdir()
    with pytest.raises(UserError, match="the sub-folder 'b' of .* has no .png, .jpg or .jpeg files"):
        build(spec(mixed))
    (mixed / "b").rmdir()
    with pytest.raises(UserError, match="has one image file; a train/test split needs at least 2"):
        build(spec(mixed))
    Image.new("L", (8, 8)).save(mixed / "a" / "y.png")
    with pytest.raises(UserError, match="data.holdout_class: 0 is not a class .* its images have no labels"):
        build(spec(mixed, holdout_class=0))  # one class folder: no labels
    corrupt = mixed / "a" / "z_corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(UserError, match=f"data.path: cannot read image '{re.escape(str(corrupt))}' .*replace or remove"):
        build(spec(mixed))
    corrupt.unlink()
    good = mixed / "a" / "w.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, quality=90)
    truncated = mixed / "a" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=f"cannot read image '{re.escape(str(truncated))}'"):
        build(spec(mixed))


def test_bad_image_config_values_exit_2_from_the_command_line(tmp_path, runs_dir):
    for i in range(4):
        Image.new("RGB", (8, 8), (level(i),) * 3).save(tmp_path / f"{i}.png")
    for extra, message in [({"channels": 2}, "data.channels: '2' is not allowed (allowed: 1, 3)"),
                           ({"size": [8]}, "data.size"), ({"size": [8, 0]}, "data.size.1"),
                           ({"limit": 1}, "data.limit")]:
        cfg = write_config(tmp_path / "c.yaml", data={"kind": "images", "path": str(tmp_path), "size": [8, 8], **extra})
        r = dsm("train", "--config", cfg)
        assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output, (extra, r.output)
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "images", "path": str(tmp_path)})
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 2 and "data.size: required but missing" in r.stderr
    assert not runs_dir.exists()


# --------------------------------------------------------------------------- cifar10
def fake_cifar(n_per_batch=3, seed=0):
    """Six tiny batches: uint8 (n, 3072) rows in CHW order and labels, with known patterns."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8), rng.integers(0, 10, n_per_batch))
            for _ in range(6)]


def py2_batch(data: np.ndarray, labels) -> bytes:
    """A batch as the official files are: written by Python 2's cPickle (protocol 2), byte strings
    as STRING opcodes, the array by ``numpy.core.multiarray._reconstruct``."""
    def s(b):
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    def i(v):
        return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)  # (non-negative, < 65536)

    minus_one = b"J" + struct.pack("<i", -1)
    dtype = b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R(" + i(3) + s(b"|") + b"NNN" + minus_one * 2 + i(0) + b"tb"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R("
             + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86" + dtype + b"\x89" + s(data.tobytes()) + b"tb")
    labs = b"](" + b"".join(i(int(v)) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"batch_label") + s(b"training batch 1 of 5") + s(b"labels") + labs + s(b"data") + array + b"u."


def write_python(folder: Path, batches, protocol="py2"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in zip(cifar10.TRAIN + cifar10.TEST, batches):
        if protocol == "py2":
            (folder / name).write_bytes(py2_batch(x, y))
            continue
        with open(folder / name, "wb") as f:  # the same dict, pickled by Python 3 and NumPy 2
            pickle.dump({b"batch_label": b"fake", b"labels": [int(v) for v in y], b"data": x,
                         b"filenames": [b"f%d.png" % i for i in range(len(y))]}, f, protocol=protocol)


def write_binary(folder: Path, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in zip(cifar10.TRAIN + cifar10.TEST, batches):
        (folder / f"{name}.bin").write_bytes(np.concatenate([y.astype(np.uint8)[:, None], x], 1).tobytes())


def test_cifar10_python_and_binary_batches_are_read_as_nhwc(tmp_path, monkeypatch):
    batches = fake_cifar()
    x_chw = np.concatenate([x for x, _ in batches[:5]])
    y_train = np.concatenate([y for _, y in batches[:5]])
    expected = np.empty((len(x_chw), 32, 32, 3))
    for c in range(3):  # pixel (h, w) of channel c is byte c·1024 + h·32 + w of a record
        for h in range(32):
            expected[:, h, :, c] = x_chw[:, c * 1024 + h * 32 : c * 1024 + h * 32 + 32]
    write_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    write_binary(tmp_path / "bin", batches)  # directly in the directory
    py = build({"kind": "cifar10", "path": str(tmp_path / "py")})
    bn = build({"kind": "cifar10", "path": str(tmp_path / "bin")})
    for ds in (py, bn):
        assert ds.kind == "cifar10" and ds.image_shape == (32, 32, 3)
        assert ds.x_train.shape == (15, 3072) and ds.x_test.shape == (3, 3072) and ds.x_train.dtype == np.float32
        np.testing.assert_allclose(ds.x_train.reshape(-1, 32, 32, 3), expected / 255, rtol=1e-6)
        np.testing.assert_array_equal(ds.y_train, y_train)
        np.testing.assert_array_equal(ds.y_test, batches[5][1])
        np.testing.assert_array_equal(ds.quantization, np.full(3072, 1 / 255, np.float32))
    # a red-only image: every third value of the row (channel 0) carries it
    red = np.zeros(3072, np.uint8)
    red[:1024] = 255
    write_binary(tmp_path / "red" / "cifar-10-batches-bin", [(red[None], np.array([7]))] * 6)
    ds = build({"kind": "cifar10", "path": str(tmp_path / "red")})
    assert ds.x_train[0, 0::3].min() == 1.0 and ds.x_train[0, 1::3].max() == 0.0 and list(ds.y_test) == [7]
    limited = build({"kind": "cifar10", "path": str(tmp_path / "py"), "limit_train": 4, "limit_test": 2})
    np.testing.assert_array_equal(limited.x_train, py.x_train[:4])
    assert limited.x_test.shape == (2, 3072)
    assert cifar10.source_files(validate({"name": "t", "data": {"kind": "cifar10", "path": str(tmp_path / "py")},
                                          "objective": {"kind": "dsm"}}, "t").data)[0].parent.name == "cifar-10-batches-py"
    held = build({"kind": "cifar10", "path": str(tmp_path / "bin"), "holdout_class": int(y_train[0])})
    assert int(y_train[0]) not in held.y_train and len(held.x_test) == 3
    from dsmcli.metrics import fd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert all(np.isfinite(v) for v in fd.fd_metrics(py.x_train[:6], py).values())  # fd's classifier at D = 3072


def test_cifar10_missing_and_damaged_files_are_named(tmp_path):
    spec = {"kind": "cifar10", "path": str(tmp_path)}
    with pytest.raises(UserError, match="has no CIFAR-10 batches .*never downloads"):
        build(spec)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(UserError, match=r"extract cifar-10-python.tar.gz there first \(tar xzf"):
        build(spec)
    with pytest.raises(UserError, match="does not exist"):
        build({**spec, "path": str(tmp_path / "absent")})
    write_python(tmp_path / "py2", fake_cifar())
    folder = tmp_path / "cifar-10-batches-py"
    write_python(folder, fake_cifar())
    (folder / "data_batch_4").unlink()
    with pytest.raises(UserError, match="has 5 of the 6 CIFAR-10 batch files but not data_batch_4"):
        build(spec)
    (folder / "data_batch_4").write_bytes(b"\x80\x02garbage")
    batch_4 = re.escape(str(folder / "data_batch_4"))
    with pytest.raises(UserError, match=f"'{batch_4}' is not a readable CIFAR-10 Python batch"):
        build(spec)
    import collections

    (folder / "data_batch_4").write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    with pytest.raises(UserError, match="refers to collections.OrderedDict, which a CIFAR-10 batch never does"):
        build(spec)  # only what NumPy arrays need is resolved
    (folder / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(UserError, match=r"b'data' in '.*data_batch_4' must be uint8 \(N, 3072\); got uint8 \(2, 10\)"):
        build(spec)
    for protocol in (2, 5):  # re-pickled by Python 3 / NumPy 2: read the same
        write_python(folder, fake_cifar(), protocol=protocol)
        np.testing.assert_array_equal(build(spec).x_train, build({**spec, "path": str(tmp_path / "py2")}).x_train)
    binary = tmp_path / "bin"
    write_binary(binary, fake_cifar())
    (binary / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(UserError, match=r"'.*test_batch.bin' holds 3,000 bytes, not a whole number of 3073-byte"):
        build({**spec, "path": str(binary)})
    (binary / "test_batch.bin").write_bytes(b"\x0c" + b"\x00" * 3072)
    with pytest.raises(UserError, match="has label 12 at image 0; CIFAR-10 labels are 0–9"):
        build({**spec, "path": str(binary)})


# --------------------------------------------------------------------------- networks and plots
def test_conv_networks_read_and_write_c_channels(tmp_path):
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 72)
    np.testing.assert_array_equal(to_images(x, (4, 6, 3)), x.reshape(2, 4, 6, 3))
    np.testing.assert_array_equal(to_rows(to_images(x, (4, 6, 3))), x)
    assert to_images(x[:, :24], (4, 6)).shape == (2, 4, 6, 1)
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for j in range(5):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / c / f"{j}.png")
    spec = {"kind": "images", "path": str(tmp_path), "size": [8, 8]}
    for objective, model in [({"kind": "ncsn", "n_sigmas": 3}, {"kind": "ncsn_conv", "channels": [4, 8]}),
                             ({"kind": "dsm", "sigma": 0.1}, {"kind": "conv", "channels": [4, 8]})]:
        exp = experiment.build(validate({"name": "t", "data": spec, "objective": objective, "model": model}, "t"))
        net = exp.net(exp.params)
        assert net.unet.stem.kernel[...].shape[2] == 3 and net.unet.out.kernel[...].shape[3] == 3
        xb = jnp.asarray(exp.data.x_train[:3])
        f = exp.score_fn(exp.params)
        out = f(xb)
        assert out.shape == (3, 192) and bool(jnp.all(jnp.isfinite(out)))
        moved = f(xb.at[1].add(0.5))
        np.testing.assert_array_equal(np.delete(np.asarray(moved), 1, 0), np.delete(np.asarray(out), 1, 0))
    ae = experiment.build(validate({"name": "t", "data": spec, "objective": {"kind": "vae"},
                                    "model": {"kind": "conv", "channels": [4, 8], "latent": 3}}, "t"))
    net = ae.net(ae.params)
    assert net.encode(jnp.asarray(ae.data.x_train[:2])).shape == (2, 3) and net.decode(jnp.zeros((2, 3))).shape == (2, 192)


def test_colour_images_are_drawn_in_colour(tmp_path):
    red = np.zeros((4, 6, 6, 3))
    red[..., 0] = 1.0
    red[1, ..., 0] = np.nan  # non-finite samples are drawn, not fatal
    rows = red.reshape(4, -1)
    plots.image_grid(tmp_path / "grid.png", rows, (6, 6, 3), "red")
    plots.image_panels(tmp_path / "panels.png", {"a": rows, "b": rows * 2}, (6, 6, 3))
    for name in ("grid.png", "panels.png"):
        pix = np.asarray(Image.open(tmp_path / name).convert("RGB")).reshape(-1, 3).astype(int)
        assert np.any((pix[:, 0] > 200) & (pix[:, 1] < 60) & (pix[:, 2] < 60)), name
    grey = np.linspace(0, 1, 4 * 36).reshape(4, 36)
    plots.image_panels(tmp_path / "grey.png", {"a": grey}, (6, 6))  # one channel: as before
    plots.image_grid(tmp_path / "grey_grid.png", grey, (6, 6), "grey")
    pix = np.asarray(Image.open(tmp_path / "grey.png").convert("RGB")).astype(int)
    assert np.abs(pix[..., 0] - pix[..., 2]).max() <= 2


# --------------------------------------------------------------------------- end to end
def test_ncsn_on_a_tiny_rgb_folder_trains_samples_and_evaluates(tmp_path, runs_dir, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the fd classifier's cache
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for c, (name, colour) in enumerate((("cats", (200, 60, 40)), ("dogs", (40, 80, 200)))):
        (root / name).mkdir(parents=True)
        for j in range(12):
            pix = np.clip(np.array(colour) + rng.normal(0, 20, (20 + j, 18, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pix).save(root / name / f"{j}.{'png' if j % 2 else 'jpg'}")
    cfg = write_config(
        tmp_path / "pets.yaml",
        data={"kind": "images", "path": str(root), "size": [16, 16]},
        objective={"kind": "ncsn", "n_sigmas": 4}, model={"kind": "ncsn_conv", "channels": [8, 16]},
        train={"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 4, "ckpt_every": 4},
        sample={"kind": "annealed_langevin", "n": 8, "steps": 2, "step_size": 1e-5, "denoise": True,
                "init": {"kind": "uniform", "low": 0, "high": 1}},
    )
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    meta = json.loads((run_dir / "meta.json").read_text())
    recorded = [f["name"] for entry in meta["data_files"] for f in entry["files"]]
    assert len(recorded) == 24 and all(n.startswith(("cats/", "dogs/")) for n in recorded)
    r = dsm("sample", run_dir)
    assert r.exit_code == 0, r.output
    x = np.load(r.stdout.strip().splitlines()[-1])["x"]
    assert x.shape == (8, 16 * 16 * 3) and np.all(np.isfinite(x))
    assert any(p.suffix == ".png" for p in (run_dir / "samples").iterdir())
    r = dsm("eval", run_dir)
    assert r.exit_code == 0, r.output
    assert (run_dir / "eval.json").is_file()
