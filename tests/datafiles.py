"""Small dataset files in torchvision's own on-disk formats, for tests that must not download.

``write_mnist`` and ``write_cifar`` write a tiny MNIST/Fashion-MNIST or CIFAR-10/100 under a
data root, in exactly the layout (and byte format) torchvision leaves after a download, and
return that root: pass it as ``data_dir``. The images are learnable: every class has its own
fixed blocky pattern, and each image is its class's pattern plus noise, so a tiny net beats
chance within an epoch or two.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def mnist_raw_dir(root: Path, name: str = "mnist") -> Path:
    """The folder holding the idx files of ``name`` (``<root>/MNIST/raw``)."""
    return Path(root) / MNIST_FOLDERS[name] / "raw"


def cifar_dir(root: Path, name: str = "cifar10") -> Path:
    """The folder holding the pickled batches of ``name`` (``<root>/cifar-10-batches-py``)."""
    return Path(root) / CIFAR_FOLDERS[name]


def class_images(
    labels: np.ndarray, shape: tuple[int, int, int], num_classes: int, seed: int
) -> np.ndarray:
    """uint8 images (N×C×H×W): each label's fixed pattern plus noise drawn from ``seed``.

    The patterns depend only on the shape and class count, so train and test (and files
    written with different seeds) share them and a model trained on one generalizes.
    """
    c, h, w = shape
    cell = 4
    protos_rng = np.random.RandomState(1234 + 7 * num_classes + h)
    grid = protos_rng.rand(num_classes, c, h // cell, w // cell) < 0.5
    protos = grid.repeat(cell, axis=2).repeat(cell, axis=3).astype(np.float64) * 170.0 + 40.0
    noise = np.random.RandomState(seed).normal(0.0, 30.0, size=(len(labels), c, h, w))
    return np.clip(np.rint(protos[labels] + noise), 0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    """``n`` labels, every class as often as possible (all present when n ≥ classes), shuffled."""
    return np.random.RandomState(seed).permutation(np.arange(n) % num_classes).astype(np.int64)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array in the idx format of MNIST (gzipped to ``path.gz`` when ``gz``)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    # Magic: 0, 0, type 0x08 (unsigned byte), number of dimensions; then big-endian sizes.
    blob = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


def write_mnist(
    root: Path, name: str = "mnist", train: int = 60, test: int = 20, seed: int = 0,
    gz: bool = False,
) -> Path:
    """Write ``name`` (mnist or fashion-mnist) with ``train``/``test`` images; return ``root``.

    ``gz`` writes the ``.gz`` files torchvision downloads instead of the extracted ones.
    """
    raw = mnist_raw_dir(root, name)
    for prefix, n, s in (("train", train, seed), ("t10k", test, seed + 1)):
        labels = balanced_labels(n, 10, s)
        images = class_images(labels, (1, 28, 28), 10, s + 1000)[:, 0]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), gz)
    return Path(root)


def write_cifar(
    root: Path, name: str = "cifar10", train: int = 50, test: int = 20, seed: int = 0
) -> Path:
    """Write ``name`` (cifar10 or cifar100) with ``train``/``test`` images; return ``root``.

    Files are Python-2 protocol-2 pickles like the real ones (see ``py2_pickle``); CIFAR-10's
    training set is split over ``data_batch_1..5`` as in the real archive.
    """
    folder = cifar_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    classes = 100 if name == "cifar100" else 10

    def batch(n: int, s: int, label: str) -> dict[bytes, object]:
        labels = balanced_labels(n, classes, s)
        data = class_images(labels, (3, 32, 32), classes, s + 1000).reshape(n, 3072)
        names = [f"img_{s}_{i:05d}.png".encode() for i in range(n)]
        if classes == 100:
            return {
                b"filenames": names,
                b"batch_label": label.encode(),
                b"fine_labels": labels.tolist(),
                b"coarse_labels": (labels // 5).tolist(),
                b"data": data,
            }
        return {
            b"batch_label": label.encode(),
            b"labels": labels.tolist(),
            b"data": data,
            b"filenames": names,
        }

    if classes == 100:
        (folder / "train").write_bytes(py2_pickle(batch(train, seed, "training batch 1 of 1")))
        (folder / "test").write_bytes(py2_pickle(batch(test, seed + 1, "testing batch 1 of 1")))
        meta = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
        (folder / "meta").write_bytes(py2_pickle(meta))
    else:
        sizes = [len(part) for part in np.array_split(np.arange(train), 5)]
        for i, n in enumerate(sizes, start=1):
            b = batch(n, seed + 10 * i, f"training batch {i} of 5")
            (folder / f"data_batch_{i}").write_bytes(py2_pickle(b))
        b = batch(test, seed + 1, "testing batch 1 of 1")
        (folder / "test_batch").write_bytes(py2_pickle(b))
        meta = {
            b"num_cases_per_batch": 10000,
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_vis": 3072,
        }
        (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return Path(root)


def py2_pickle(obj: dict[bytes, object]) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle (protocol 2) wrote the real CIFAR files.

    Python 3 cannot produce that format itself (it writes bytes as ``_codecs.encode`` calls
    under protocol 2 and numpy 2 names ``numpy._core``), and the point of these files is to
    exercise the same opcodes and globals a real download holds: Python 2 ``str`` values as
    BINSTRING, and numpy arrays as ``numpy.core.multiarray._reconstruct(numpy.ndarray, ...)``
    with a ``numpy.dtype``. Values may be bytes, ints, lists of those, and uint8 arrays.
    """
    return b"\x80\x02}(" + b"".join(_str(k) + _value(v) for k, v in obj.items()) + b"u."


def _str(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING


def _int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])  # BININT1
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)  # BININT2
    return b"J" + struct.pack("<i", i)  # BININT


def _value(v: object) -> bytes:
    if isinstance(v, bytes):
        return _str(v)
    if isinstance(v, int):
        return _int(v)
    if isinstance(v, list):
        return b"]" + (b"(" + b"".join(_value(e) for e in v) + b"e" if v else b"")
    if isinstance(v, np.ndarray) and v.dtype == np.uint8:
        shape = b"(" + b"".join(_int(s) for s in v.shape) + b"t"
        # dtype('u1', 0, 1) with state (3, '|', None, None, None, -1, -1, 0), as numpy 1.x wrote.
        dtype = (
            b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
            + b"(" + _int(3) + _str(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
        )
        # _reconstruct(ndarray, (0,), 'b'), then state (1, shape, dtype, fortran=False, data).
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85"
            + _str(b"b") + b"\x87R"
            + b"(" + _int(1) + shape + dtype + b"\x89" + _str(np.ascontiguousarray(v).tobytes())
            + b"tb"
        )
    raise TypeError(f"py2_pickle cannot write {type(v).__name__}")


TINY_FOLDER = "tiny-imagenet-200"
# Not in sorted order, like the published wnids.txt: labels follow the sorted wnids.
TINY_WNIDS = ("n09999999", "n01443537", "n04067472", "n02124075", "n03444034")


def tiny_dir(root: Path) -> Path:
    """Tiny ImageNet's folder under a data root (``<root>/tiny-imagenet-200``)."""
    return Path(root) / TINY_FOLDER


def write_jpeg(path: Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write a C×H×W uint8 array (C = 1 or 3) as a JPEG file with PIL."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, "JPEG", quality=quality)
    return path


def write_tiny_imagenet(
    root: Path, classes: int = 3, per_class: int = 4, val: int = 6, seed: int = 0
) -> Path:
    """Write a small Tiny ImageNet in its published layout under ``root``; return ``root``.

    ``wnids.txt`` lists the first ``classes`` of ``TINY_WNIDS`` (unsorted), ``train/<wnid>/``
    holds ``images/<wnid>_<i>.JPEG`` and ``<wnid>_boxes.txt``, ``val/images/val_<i>.JPEG`` are
    labelled by ``val/val_annotations.txt`` (round-robin over the wnids), and ``test/images``
    and ``words.txt`` are there as in the zip. Images are 64×64 JPEGs of each class's pattern
    plus noise; the first train image of the first class and val_1 are grayscale, as some of the
    published ones are.
    """
    folder = tiny_dir(root)
    wnids = list(TINY_WNIDS[:classes])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
    order = sorted(wnids)
    for k, wnid in enumerate(wnids):
        label = order.index(wnid)
        images = class_images(np.full(per_class, label), (3, 64, 64), 200, seed + 10 * k)
        boxes = []
        for i, image in enumerate(images):
            gray = k == 0 and i == 0
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                       image[:1] if gray else image)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    val_wnids = [wnids[i % classes] for i in range(val)]
    val_labels = np.array([order.index(w) for w in val_wnids])
    lines = []
    for i, (wnid, image) in enumerate(
        zip(val_wnids, class_images(val_labels, (3, 64, 64), 200, seed + 1), strict=True)
    ):
        write_jpeg(folder / "val" / "images" / f"val_{i}.JPEG", image[:1] if i == 1 else image)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    write_jpeg(folder / "test" / "images" / "test_0.JPEG", class_images(
        np.zeros(1, np.int64), (3, 64, 64), 200, seed + 2)[0])
    return Path(root)
