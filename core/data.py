"""Datasets as uint8 tensors, and a loader that batches them on the training device.

Every dataset is read straight from torchvision's on-disk layout into one uint8 tensor per split:
parsing the idx files and CIFAR pickles ourselves is fast (no per-sample PIL), works on small
test files that could never pass torchvision's md5 checks, and lets us unpickle with an
allow-list instead of ``pickle.load``. Only a missing dataset goes through torchvision's own
classes, which download it into the same layout.

``DeviceLoader`` then replaces ``DataLoader`` + per-sample transforms: the whole split moves to
the device once, and shuffling, CIFAR augmentation and normalization run on whole batches there.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import re
import shutil
import struct
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prunetui.core import catalog
from prunetui.core.errors import ConfigError, DataError, choices_message

CIFAR_PAD = 4  # pixels of zero padding before the random crop, as in torchvision's CIFAR recipes

# The digits split is part of the dataset's definition, not of a run: a fixed seed keeps the
# same 360 test images whatever the run's seed, so accuracies are comparable across runs.
_DIGITS_SEED = 0

# ---------------------------------------------------------------------------------------------
# Where the data lives


def default_data_dir() -> Path:
    """The data root: ``$PRUNETUI_DATA``, else ``$XDG_CACHE_HOME/prunetui/data``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``; like the XDG spec says, a relative value is
    ignored.
    """
    env = os.environ.get("PRUNETUI_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "prunetui" / "data"


@dataclass(eq=False)  # == on tensors is elementwise; comparing two Splits is a mistake
class Splits:
    """A dataset in memory: uint8 images N×C×H×W and int64 labels N, for train and test."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    info: catalog.DatasetInfo


@dataclass(frozen=True)
class _Layout:
    """Where torchvision keeps a downloadable dataset under the data root, and its class."""

    folder: str  # relative to the root
    train: tuple[str, ...]  # idx: (images, labels); cifar: the pickled batches
    test: tuple[str, ...]
    torchvision_class: str
    idx: bool  # MNIST-style idx files (``.gz`` also accepted) rather than CIFAR pickles


def _mnist_layout(folder: str, cls: str) -> _Layout:
    return _Layout(
        f"{folder}/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        cls,
        idx=True,
    )


_LAYOUTS: dict[str, _Layout] = {
    "mnist": _mnist_layout("MNIST", "MNIST"),
    "fashion-mnist": _mnist_layout("FashionMNIST", "FashionMNIST"),
    "cifar10": _Layout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "CIFAR10",
        idx=False,
    ),
    "cifar100": _Layout("cifar-100-python", ("train",), ("test",), "CIFAR100", idx=False),
}


def _find(layout: _Layout, root: Path, name: str) -> Path | None:
    """The file for ``name`` if present: idx files may also be the ``.gz`` torchvision fetches."""
    path = root / layout.folder / name
    if path.is_file():
        return path
    if layout.idx:
        gz = path.with_name(name + ".gz")
        if gz.is_file():
            return gz
    return None


def _missing(layout: _Layout, root: Path) -> list[Path]:
    names = layout.train + layout.test
    return [root / layout.folder / n for n in names if _find(layout, root, n) is None]


def find_files(name: str, data_dir: Path | None = None) -> str:
    """Where dataset ``name``'s files are under ``data_dir``, or what is missing, in words
    (for ``prunetui datasets``); checks presence only, without reading the files."""
    layout = _LAYOUTS.get(name)
    if layout is None:
        return "bundled with scikit-learn"
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    missing = _missing(layout, root)
    if not missing:
        return f"found in {root / layout.folder}"
    total = len(layout.train) + len(layout.test)
    if len(missing) == total:
        return f"missing: {root / layout.folder} (downloaded on first use)"
    return f"incomplete: {len(missing)} of {total} files missing in {root / layout.folder}"


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(name: str, data_dir: Path | None, download: bool = True) -> Splits:
    """Load dataset ``name`` from ``data_dir`` (default: ``default_data_dir()``).

    Files already in torchvision's layout are parsed directly. Missing files are downloaded
    through torchvision when ``download`` is true. Raises ``DataError`` when the files are
    missing and cannot be downloaded, or are corrupt; ``ConfigError`` for an unknown name.
    ``digits`` is bundled with scikit-learn and ignores ``data_dir``.
    """
    info = catalog.DATASETS.get(name)
    if info is None:
        raise ConfigError(choices_message("dataset", name, list(catalog.DATASETS)))
    if name == "digits":
        return _load_digits(info)
    layout = _LAYOUTS[name]
    root = ensure_files(name, data_dir, download)
    paths = [_find(layout, root, n) for n in layout.train + layout.test]
    assert all(p is not None for p in paths)  # _download checked that nothing is missing
    files = [p for p in paths if p is not None]
    n_train = len(layout.train)
    read = _read_idx_split if layout.idx else _read_cifar_split
    train_x, train_y = read(files[:n_train], info)
    test_x, test_y = read(files[n_train:], info)
    return Splits(train_x, train_y, test_x, test_y, info)


def fingerprint(splits: Splits) -> dict[str, Any]:
    """What identifies the data a run trained on: its sizes and a digest of its images and
    labels. The same data in another folder, or still gzipped, has the same fingerprint; a
    subset, a fake stand-in or another release does not."""
    digest = hashlib.blake2b(digest_size=8)
    for t in (splits.train_x, splits.train_y, splits.test_x, splits.test_y):
        digest.update(t.contiguous().numpy().tobytes())
    return {"train": int(splits.train_x.shape[0]), "test": int(splits.test_x.shape[0]),
            "digest": digest.hexdigest()}


def current_fingerprint(name: str, data_dir: Path | None) -> dict[str, Any] | None:
    """The fingerprint of dataset ``name`` as the data dir holds it now, or None when its
    files are not there (nothing to compare with). Read once per process and file set."""
    layout = _LAYOUTS.get(name)
    if layout is None:
        return _fingerprint_of(name, "", ()) if name in catalog.DATASETS else None
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    files = [_find(layout, root, n) for n in layout.train + layout.test]
    if any(f is None for f in files):
        return None
    stamps = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f)
    return _fingerprint_of(name, str(root), stamps)


@functools.lru_cache(maxsize=8)
def _fingerprint_of(name: str, root: str, stamps: tuple[tuple[str, int, int], ...]
                    ) -> dict[str, Any]:
    # ``stamps`` (path, size, mtime) is the cache key: rewritten files are read again.
    return fingerprint(load_dataset(name, Path(root) if root else None, download=False))


def ensure_files(name: str, data_dir: Path | None, download: bool = True) -> Path:
    """Make sure dataset ``name``'s files are present, downloading them when missing and
    ``download`` allows; return the data root. Reads nothing: a sweep calls this once before
    its runs, so that missing data is one error (not one per run) and parallel runs do not
    download the same files at once. Raises like ``load_dataset``."""
    if name not in catalog.DATASETS:
        raise ConfigError(choices_message("dataset", name, list(catalog.DATASETS)))
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    layout = _LAYOUTS.get(name)
    if layout is None:  # bundled (digits)
        return root
    missing = _missing(layout, root)
    if missing:
        if not download:
            raise DataError(
                f"{name} not found: expected {_describe_missing(layout, missing)}",
                field="data_dir", hint="put the files there, set {field} to an existing "
                "torchvision data dir, or allow downloading")
        _download(name, layout, root, missing)
    return root


def _describe_missing(layout: _Layout, missing: list[Path]) -> str:
    first = f"{missing[0]}{' (or .gz)' if layout.idx else ''}"
    more = len(missing) - 1
    if not more:
        return first
    return f"{first} and {more} more file{'s' if more > 1 else ''} in that folder"


# What a failed download raises: URLError, socket and SSL errors are OSErrors; torchvision wraps
# some in RuntimeError (MNIST after trying every mirror, md5 mismatches); a connection dropped
# mid-transfer leaves a truncated archive (EOFError, tarfile/zlib errors, IncompleteRead).
_DOWNLOAD_ERRORS = (
    OSError,
    RuntimeError,
    EOFError,
    ValueError,
    tarfile.TarError,
    zlib.error,
    HTTPException,
)


def _download(name: str, layout: _Layout, root: Path, missing: list[Path]) -> None:
    """Download through torchvision's own dataset class, the path that works with a network.
    A failed download removes the folders it created (bad input writes nothing)."""
    target = root / layout.folder
    fresh = next((p for p in reversed([target, *target.parents]) if not p.exists()), None)
    try:
        _fetch(name, layout, root, missing)
    except DataError:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        raise


def _fetch(name: str, layout: _Layout, root: Path, missing: list[Path]) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create data dir {root} to download {name} ({_one_line(e)})",
            field="data_dir", hint="set {field} to a writable folder") from e
    # The way out, with the data dir named as the face showing the error names it.
    fix = (f"put the files at {root / layout.folder}, set {{field}} to an existing "
           "torchvision data dir, or connect to a network")
    try:
        import torchvision.datasets

        cls: Callable[..., Any] = getattr(torchvision.datasets, layout.torchvision_class)
        # torchvision prints progress with print(); stdout may carry a machine-readable report
        # (or a TUI), so its chatter goes to stderr instead.
        with contextlib.redirect_stdout(sys.stderr):
            cls(str(root), download=True)
    except _DOWNLOAD_ERRORS as e:
        raise DataError(
            f"{name} not found (expected {_describe_missing(layout, missing)}) and "
            f"downloading it failed ({_one_line(e)})", field="data_dir", hint=fix) from e
    still = _missing(layout, root)
    if still:
        raise DataError(f"{name}: the download did not produce "
                        f"{_describe_missing(layout, still)}", field="data_dir", hint=fix)


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: torchvision's MNIST errors span several lines."""
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(
        f"{path} is corrupt ({why}); delete it to re-download it, or replace it with a good copy"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({_one_line(e)}); check its permissions") from e
    if path.suffix == ".gz":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise _corrupt(path, f"bad gzip data: {_one_line(e)}") from e
    return data


def _parse_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an idx file of unsigned bytes with ``ndim`` dimensions (the MNIST format)."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, f"{len(data)} bytes, shorter than its header")
    # Magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dimensions.
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise _corrupt(path, f"bad idx magic number 0x{data[:4].hex()}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise _corrupt(path, f"header says {expected} bytes, the file has {len(data)}")
    # Copy: frombuffer over bytes is read-only, which torch.from_numpy would warn about.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _labels(path: Path, labels: np.ndarray, n: int, num_classes: int) -> Tensor:
    if labels.shape != (n,):
        raise _corrupt(path, f"{labels.shape[0] if labels.ndim else 0} labels for {n} images")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise _corrupt(path, f"label {bad} outside 0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


def _read_idx_split(files: list[Path], info: catalog.DatasetInfo) -> tuple[Tensor, Tensor]:
    image_path, label_path = files
    images = _parse_idx(image_path, 3)
    if images.shape[1:] != info.shape[1:]:
        h, w = info.shape[1:]
        raise _corrupt(image_path, f"images are {images.shape[1]}x{images.shape[2]}, not {h}x{w}")
    labels = _labels(label_path, _parse_idx(label_path, 1), len(images), info.num_classes)
    return torch.from_numpy(images).unsqueeze(1), labels


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a Python object outside the allow-list."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # The CIFAR pickles were written by Python 2 and hold only dicts, lists, str/bytes, ints and
    # one numpy uint8 array, which pickles as numpy.core.multiarray._reconstruct(numpy.ndarray,
    # ...) and a numpy.dtype. Those three are all we allow. numpy 2 moved _reconstruct to
    # numpy._core (and writes that name); we take the function from an array's own __reduce__
    # so neither module is imported by name and no deprecation shim is touched.
    reconstruct = np.zeros(0).__reduce__()[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches, refusing every global outside ``_allowed_globals``.

    A pickle can call any importable function (``os.system`` via ``__reduce__``), so the data
    files are treated as untrusted input.
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"it asks for the Python object {module}.{name}") from None


def _unpickle(path: Path) -> Any:
    data = _read_bytes(path)
    try:
        return _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{path} was refused: {e}, which a CIFAR batch never does; the file is corrupt "
            f"or unsafe: delete it to re-download it"
        ) from e
    except Exception as e:
        # Garbage bytes can make the unpickler (and numpy's __setstate__) raise almost any
        # exception type; all of them mean the same thing here.
        raise _corrupt(path, f"cannot unpickle: {type(e).__name__}: {_one_line(e, 100)}") from e


def _get(d: dict[Any, Any], key: str) -> Any:
    # Python 2 wrote str keys, which encoding="bytes" returns as bytes; a file re-pickled by
    # Python 3 would have str keys. Both mean the same batch.
    return d[key.encode()] if key.encode() in d else d.get(key)


def _read_cifar_split(files: list[Path], info: catalog.DatasetInfo) -> tuple[Tensor, Tensor]:
    label_key = "fine_labels" if info.num_classes == 100 else "labels"
    c, h, w = info.shape
    xs: list[np.ndarray] = []
    ys: list[Tensor] = []
    for path in files:
        batch = _unpickle(path)
        if not isinstance(batch, dict):
            raise _corrupt(path, f"holds a {type(batch).__name__}, not a dict")
        data = _get(batch, "data")
        raw_labels = _get(batch, label_key)
        if data is None or raw_labels is None:
            raise _corrupt(path, f"no 'data' and {label_key!r} entries")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != c * h * w
        ):
            shape = getattr(data, "shape", type(data).__name__)
            raise _corrupt(path, f"'data' is {shape}, not uint8 N×{c * h * w}")
        try:
            labels = np.asarray(raw_labels)
        except (ValueError, TypeError) as e:
            raise _corrupt(path, f"unreadable labels: {_one_line(e, 100)}") from e
        if labels.dtype.kind not in "iu" and not (labels.size == 0 and labels.ndim == 1):
            raise _corrupt(path, f"labels are {labels.dtype}, not integers")
        ys.append(_labels(path, labels, len(data), info.num_classes))
        # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: NCHW as is.
        xs.append(data.reshape(-1, c, h, w))
    # concatenate copies into one writable array (the unpickled ones may be read-only views).
    return torch.from_numpy(np.concatenate(xs)), torch.cat(ys)


def _load_digits(info: catalog.DatasetInfo) -> Splits:
    """scikit-learn's bundled 8×8 digits, scaled to 0..255, split 1437/360 stratified."""
    from sklearn.datasets import load_digits  # slow import, and only this dataset needs it

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    x = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train_idx, test_idx = _stratified_split(y.numpy(), info.test_size, _DIGITS_SEED)
    return Splits(x[train_idx], y[train_idx], x[test_idx], y[test_idx], info)


def _stratified_split(y: np.ndarray, test_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices of a class-stratified random split with exactly ``test_size`` test samples.

    Our own rather than scikit-learn's so the split cannot change with its version; the legacy
    ``RandomState`` is numpy's stream-stable generator for the same reason.
    """
    rng = np.random.RandomState(seed)
    classes, counts = np.unique(y, return_counts=True)
    # Each class gets its proportional share of the test set, rounded down; the seats left go
    # to the largest remainders (ties to the lower class), so the total is exact.
    share = counts * test_size / len(y)
    take = np.floor(share).astype(np.int64)
    order = sorted(range(len(classes)), key=lambda i: (-(share[i] - take[i]), i))
    for i in order[: test_size - int(take.sum())]:
        take[i] += 1
    test: list[np.ndarray] = []
    train: list[np.ndarray] = []
    for cls, k in zip(classes, take, strict=True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test.append(idx[:k])
        train.append(idx[k:])
    # Sorted: the split is a set; the loaders shuffle.
    return (
        torch.from_numpy(np.sort(np.concatenate(train))),
        torch.from_numpy(np.sort(np.concatenate(test))),
    )


# ---------------------------------------------------------------------------------------------
# Batching on the device


def _affine(
    mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Scale and shift (1×C×1×1) with ``x*scale + shift == (x/255 - mean)/std``."""
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {channels} channels")
    m = torch.tensor(mean, dtype=torch.float64).view(1, channels, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, channels, 1, 1)
    # Computed in float64, then rounded once to float32.
    scale = (1.0 / (255.0 * s)).to(torch.float32)
    shift = (-m / s).to(torch.float32)
    return scale.to(device), shift.to(device)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 images N×C×H×W → float32 ``(x/255 - mean)/std``, on ``x``'s device."""
    scale, shift = _affine(mean, std, x.shape[1], x.device)
    return torch.addcmul(shift, x.to(torch.float32), scale)


def crop_flip(x: Tensor, top: Tensor, left: Tensor, flip: Tensor, pad: int = CIFAR_PAD) -> Tensor:
    """Per-sample crop of ``x`` padded by ``pad`` zeros, then optional horizontal flip.

    ``x`` is N×C×H×W; ``top`` and ``left`` (N, in ``0..2*pad``) are the crop's corner in the
    padded image and ``flip`` (N, bool) flips it. The output keeps H×W and dtype, and is
    exactly torchvision's ``RandomCrop(H, padding=pad)`` then ``RandomHorizontalFlip`` for those
    draws. One gather for the whole batch: no loop over samples.
    """
    n, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = top.to(dev).view(n, 1) + ar_h  # N×H
    # A flipped crop reads its columns right to left: out[..., j] = crop[..., w-1-j].
    cols = left.to(dev).view(n, 1) + torch.where(flip.to(dev).view(n, 1), w - 1 - ar_w, ar_w)
    return padded[
        torch.arange(n, device=dev).view(n, 1, 1, 1),
        torch.arange(c, device=dev).view(1, c, 1, 1),
        rows.view(n, 1, h, 1),
        cols.view(n, 1, 1, w),
    ]


class DeviceLoader:
    """Batches of normalized float32 images and int64 labels from tensors kept on a device.

    ``x`` (uint8 N×C×H×W) and ``y`` move to ``device`` once, here. Each batch is gathered,
    augmented (random ``pad``-pixel crop and horizontal flip, as torchvision's CIFAR recipe)
    and normalized on the device. Augmentation runs on the raw uint8 images before
    normalization, so the padding is black (0), as with torchvision's ``RandomCrop`` before
    ``Normalize``, not 0 in the normalized space. The shuffle order and augmentation draws come
    from ``generator`` (a CPU generator), so a seeded generator gives the same epochs anywhere.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"x must be uint8 N×C×H×W, got {x.dtype} {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y has shape {tuple(y.shape)} for {x.shape[0]} images")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.pad = CIFAR_PAD
        self._scale, self._shift = _affine(mean, std, x.shape[1], self.device)

    @property
    def num_samples(self) -> int:
        """Images per epoch (all of them, less the dropped last partial batch)."""
        return len(self) * self.batch_size if self.drop_last else int(self.x.shape[0])

    def __len__(self) -> int:
        n = int(self.x.shape[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = int(self.x.shape[0])
        g = self.generator
        # All of an epoch's draws at once, on the CPU generator, then one transfer each.
        order = torch.randperm(n, generator=g).to(self.device) if self.shuffle else None
        draws: tuple[Tensor, Tensor, Tensor] | None = None
        if self.augment:
            span = 2 * self.pad + 1
            top = torch.randint(0, span, (n,), generator=g)
            left = torch.randint(0, span, (n,), generator=g)
            flip = torch.rand(n, generator=g) < 0.5
            draws = (top.to(self.device), left.to(self.device), flip.to(self.device))
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if draws is not None:
                top, left, flip = (d[lo:hi] for d in draws)
                xb = crop_flip(xb, top, left, flip, self.pad)
            out = torch.addcmul(self._shift, xb.to(torch.float32), self._scale)
            if self.channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
            yield out, yb


def make_loaders(
    splits: Splits,
    batch_size: int,
    test_batch_size: int,
    device: torch.device | str,
    generator: torch.Generator | None,
    channels_last: bool = False,
) -> tuple[DeviceLoader, DeviceLoader]:
    """The train loader (shuffled; augmented when the dataset calls for it) and the test loader."""
    info = splits.info
    train = DeviceLoader(
        splits.train_x, splits.train_y, batch_size, info.mean, info.std, device,
        shuffle=True, augment=info.augment, generator=generator, channels_last=channels_last,
    )
    test = DeviceLoader(
        splits.test_x, splits.test_y, test_batch_size, info.mean, info.std, device,
        shuffle=False, augment=False, generator=None, channels_last=channels_last,
    )
    return train, test


def prune_batch(
    splits: Splits, per_class: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``per_class`` random training images of every class (all of a smaller class), normalized.

    Returns float32 images and int64 labels on the CPU, in a shuffled order; the same
    generator state gives the same batch.
    """
    info = splits.info
    y = splits.train_y.cpu()
    picks: list[Tensor] = []
    for cls in range(info.num_classes):
        members = torch.nonzero(y == cls).flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    idx = torch.cat(picks)
    idx = idx[torch.randperm(len(idx), generator=generator)]
    x = splits.train_x.cpu().index_select(0, idx)
    return normalize(x, info.mean, info.std), y.index_select(0, idx)
