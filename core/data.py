"""Datasets as uint8 tensors, and a loader that batches them on the training device.

Every dataset is read straight from its on-disk layout into one uint8 tensor per split: for
torchvision's datasets, parsing the idx files and CIFAR pickles ourselves is fast (no per-sample
PIL), works on small test files that could never pass torchvision's md5 checks, and lets us
unpickle with an allow-list instead of ``pickle.load``. Only a missing dataset goes through
torchvision's own classes, which download it into the same layout. Tiny ImageNet is read from
its published folder of JPEGs, decoded once into a cache next to it.

Files are untrusted input: every reader bounds what a file may make it read or build (from the
dataset's published sizes) before reading or building it, and reports any fault as one
``DataError`` line naming the file.

``DeviceLoader`` then replaces ``DataLoader`` + per-sample transforms: the whole split moves to
the device once, and shuffling, augmentation and normalization run on whole batches there.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import re
import shutil
import struct
import sys
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prunetui.core import catalog
from prunetui.core.errors import ConfigError, DataError, choices_message
from prunetui.core.store import atomic_write

CIFAR_PAD = 4  # pixels of zero padding before the random crop, as in torchvision's CIFAR recipes

# The digits split is part of the dataset's definition, not of a run: a fixed seed keeps the
# same 360 test images whatever the run's seed, so accuracies are comparable across runs.
_DIGITS_SEED = 0

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

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
    """A dataset in memory: uint8 images N×C×H×W and int64 labels N, for train and test.

    ``digest`` is set by loaders whose pixels depend on a decoder (Tiny ImageNet's JPEGs): the
    digest of the encoded files and labels, which ``fingerprint`` uses instead of the pixels'.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    info: catalog.DatasetInfo
    digest: str | None = None


@dataclass(frozen=True)
class _Layout:
    """Where a dataset's files live under the data root, and how they are read."""

    folder: str  # relative to the root
    # The files (and folders) that must be there: idx (images, labels), the pickled CIFAR
    # batches, or the entries of Tiny ImageNet's folder. Checking them reads nothing.
    train: tuple[str, ...]
    test: tuple[str, ...]
    torchvision_class: str | None  # the class that downloads it; None: prunetui cannot
    format: Literal["idx", "cifar", "jpeg"]  # idx also accepts ``.gz`` files


def _mnist_layout(folder: str, cls: str) -> _Layout:
    return _Layout(
        f"{folder}/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        cls,
        "idx",
    )


_TINY_FOLDER = "tiny-imagenet-200"
_LAYOUTS: dict[str, _Layout] = {
    "mnist": _mnist_layout("MNIST", "MNIST"),
    "fashion-mnist": _mnist_layout("FashionMNIST", "FashionMNIST"),
    "cifar10": _Layout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "CIFAR10",
        "cifar",
    ),
    "cifar100": _Layout("cifar-100-python", ("train",), ("test",), "CIFAR100", "cifar"),
    # The val split (50 labelled images per class) is our test split; test/ has no labels.
    "tiny-imagenet": _Layout(
        _TINY_FOLDER,
        ("wnids.txt", "train"),
        ("val/val_annotations.txt", "val/images"),
        None,
        "jpeg",
    ),
}


def _find(layout: _Layout, root: Path, name: str) -> Path | None:
    """The file for ``name`` if present: idx files may also be the ``.gz`` torchvision fetches."""
    path = root / layout.folder / name
    if path.exists():
        return path
    if layout.format == "idx":
        gz = path.with_name(name + ".gz")
        if gz.is_file():
            return gz
    return None


def _missing(layout: _Layout, root: Path) -> list[Path]:
    names = layout.train + layout.test
    return [root / layout.folder / n for n in names if _find(layout, root, n) is None]


def _how_to_get(layout: _Layout, root: Path) -> str:
    """Where missing files come from, for ``find_files``."""
    if layout.torchvision_class is None:
        return f"download {TINY_IMAGENET_URL} and unzip it into {root}"
    return "downloaded on first use"


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
        return f"missing: {root / layout.folder} ({_how_to_get(layout, root)})"
    return f"incomplete: {len(missing)} of {total} files missing in {root / layout.folder}"


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(name: str, data_dir: Path | None, download: bool = True) -> Splits:
    """Load dataset ``name`` from ``data_dir`` (default: ``default_data_dir()``).

    Files already in torchvision's layout are parsed directly. Missing files are downloaded
    through torchvision when ``download`` is true (not Tiny ImageNet, which torchvision does
    not ship). Raises ``DataError`` when the files are missing and cannot be downloaded, or are
    corrupt; ``ConfigError`` for an unknown name. ``digits`` is bundled with scikit-learn and
    ignores ``data_dir``. Tiny ImageNet's first load decodes its JPEGs (a minute for the
    110,000 of them) into a cache next to its folder; later loads read the cache.
    """
    info = catalog.DATASETS.get(name)
    if info is None:
        raise ConfigError(choices_message("dataset", name, list(catalog.DATASETS)))
    if name == "digits":
        return _load_digits(info)
    layout = _LAYOUTS[name]
    root = ensure_files(name, data_dir, download)
    if layout.format == "jpeg":
        return _load_tiny_imagenet(root, info)
    paths = [_find(layout, root, n) for n in layout.train + layout.test]
    assert all(p is not None for p in paths)  # _download checked that nothing is missing
    files = [p for p in paths if p is not None]
    n_train = len(layout.train)
    read = _read_idx_split if layout.format == "idx" else _read_cifar_split
    train_x, train_y = read(files[:n_train], info, info.train_size)
    test_x, test_y = read(files[n_train:], info, info.test_size)
    return Splits(train_x, train_y, test_x, test_y, info)


def fingerprint(splits: Splits) -> dict[str, Any]:
    """What identifies the data a run trained on: its sizes and a digest of its images and
    labels. The same data in another folder, or still gzipped, has the same fingerprint; a
    subset, a fake stand-in or another release does not. Tiny ImageNet's digest is of its JPEG
    files (``Splits.digest``): two JPEG decoders may not give the same pixels."""
    if splits.digest is not None:
        digest = splits.digest
    else:
        h = hashlib.blake2b(digest_size=8)
        for t in (splits.train_x, splits.train_y, splits.test_x, splits.test_y):
            h.update(t.contiguous().numpy().tobytes())
        digest = h.hexdigest()
    return {"train": int(splits.train_x.shape[0]), "test": int(splits.test_x.shape[0]),
            "digest": digest}


def current_fingerprint(name: str, data_dir: Path | None) -> dict[str, Any] | None:
    """The fingerprint of dataset ``name`` as the data dir holds it now, or None when its
    files are not there (nothing to compare with). Read once per process and file set."""
    layout = _LAYOUTS.get(name)
    if layout is None:
        return _fingerprint_of(name, "", ()) if name in catalog.DATASETS else None
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if _missing(layout, root):
        return None
    if layout.format == "jpeg":
        return _tiny_fingerprint(root, catalog.DATASETS[name])
    files = [_find(layout, root, n) for n in layout.train + layout.test]
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
    if missing and layout.torchvision_class is None:
        # Whatever --download says: nothing could fetch it, so fail at once with the fix.
        raise DataError(
            f"{name} not found: expected {missing[0]}; download {TINY_IMAGENET_URL} and unzip "
            f"it into {root} (prunetui cannot download it), or pass --data-dir DIR pointing at "
            f"a data dir that holds {layout.folder}/"
        )
    if missing:
        if not download:
            raise DataError(
                f"{name} not found: expected {_describe_missing(layout, missing)}",
                field="data_dir", hint="put the files there, set {field} to an existing "
                f"torchvision data dir, or allow downloading{BUNDLED_HINT}")
        _download(name, layout, root, missing)
    return root


# Where a dataset is missing, the way to a first run that needs no files and no network.
BUNDLED_HINT = "; to try prunetui at once, the dataset digits is bundled (no download)"


def _describe_missing(layout: _Layout, missing: list[Path]) -> str:
    first = f"{missing[0]}{' (or .gz)' if layout.format == 'idx' else ''}"
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
           f"torchvision data dir, or connect to a network{BUNDLED_HINT}")
    try:
        import torchvision.datasets

        assert layout.torchvision_class is not None  # ensure_files refused the others
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



# ---------------------------------------------------------------------------------------------
# Reading files. A file may lie about its size (an idx header declaring four billion images, a
# gzip bomb, a pickle that refers to one list a million times): each reader knows the most a
# split can hold from the dataset's published sizes and refuses more before reading or
# building it, so a bad file costs at most what a good one would.

_REDOWNLOAD = "delete it to re-download it, or replace it with a good copy"


def _corrupt(path: Path | str, why: str, fix: str = _REDOWNLOAD) -> DataError:
    return DataError(f"{path} is corrupt ({why}); {fix}")


def _cannot_read(path: Path | str, e: OSError) -> DataError:
    return DataError(f"cannot read {path} ({_one_line(e)}); check its permissions")


def _read_capped(path: Path | str, limit: int, what: str, fix: str = _REDOWNLOAD) -> bytes:
    """The bytes of ``path``; a file of more than ``limit`` bytes is refused unread."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # read(n) allocates n bytes up front: ask for what is there, not for the limit.
            data = f.read(size + 1) if size <= limit else b""
    except OSError as e:
        raise _cannot_read(path, e) from e
    if size > limit or len(data) > limit:  # the second: it grew while we read it
        raise _corrupt(path, f"{max(size, len(data)):,} bytes, more than {what} can hold "
                             f"({limit:,})", fix)
    return data


@contextlib.contextmanager
def _idx_stream(path: Path) -> Iterator[io.RawIOBase | io.BufferedIOBase]:
    """``path`` open for reading, decompressed as it is read when it is a ``.gz``; read and
    gzip errors become one DataError naming the file."""
    try:
        # Unbuffered: a buffered readinto of a large array copies through its small buffer,
        # several times slower than the one read(2) a plain file needs.
        with open(path, "rb", buffering=0) as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw) as gz:
                    yield gz
            else:
                yield raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # before OSError: BadGzipFile is one
        raise _corrupt(path, f"bad gzip data: {_one_line(e)}") from e
    except OSError as e:
        raise _cannot_read(path, e) from e


def _fill(f: io.RawIOBase | io.BufferedIOBase, buf: memoryview) -> int:
    """Read ``f`` into ``buf`` until it is full or ``f`` ends; return the bytes read."""
    got = 0
    while got < len(buf):
        k = f.readinto(buf[got:])
        if not k:
            break
        got += k
    return got


def _read_idx(path: Path, item_shape: tuple[int, ...], count: int | None, max_count: int
              ) -> np.ndarray:
    """Parse an idx file of unsigned bytes (the MNIST format) holding items of ``item_shape``:
    exactly ``count`` of them, or when ``count`` is None at most ``max_count``.

    The header is checked before the data is read, and exactly the bytes it declares are read:
    a lying header or a gzip bomb costs no more than the largest good file.
    """
    ndim = 1 + len(item_shape)
    header_len = 4 + 4 * ndim
    with _idx_stream(path) as f:
        header = f.read(header_len)
        if len(header) < header_len:
            raise _corrupt(path, f"{len(header)} bytes, shorter than its header")
        # Magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dims.
        if header[:3] != b"\x00\x00\x08" or header[3] != ndim:
            raise _corrupt(path, f"bad idx magic number 0x{header[:4].hex()}")
        dims = struct.unpack(f">{ndim}I", header[4:])
        _check_idx_dims(path, dims, item_shape, count, max_count)
        size = math.prod(dims)
        if path.suffix != ".gz":  # its size says at once whether the data is all there
            on_disk = os.fstat(f.fileno()).st_size
            if on_disk != header_len + size:
                raise _corrupt(path, f"header says {header_len + size} bytes, the file has "
                                     f"{on_disk}")
        # Exactly the declared bytes, then one more to see whether the data goes on: never
        # more than that in memory, whatever a gzip stream would decompress to.
        data = bytearray(size)
        with memoryview(data) as view:
            got = _fill(f, view)
        del data[got:]  # (a bytearray cannot shrink while a view of it exists)
        more = bool(f.read(1))
    if len(data) < size or more:
        has = f"{header_len + len(data)}" if len(data) < size else "more"
        raise _corrupt(path, f"header says {header_len + size} bytes, the data has {has}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_idx_dims(path: Path, dims: tuple[int, ...], item_shape: tuple[int, ...],
                    count: int | None, max_count: int) -> None:
    if tuple(dims[1:]) != item_shape:
        got, want = ("x".join(map(str, s)) for s in (dims[1:], item_shape))
        raise _corrupt(path, f"images are {got}, not {want}")
    if count is not None and dims[0] != count:
        raise _corrupt(path, f"{dims[0]} labels for {count} images")
    if dims[0] > max_count:
        raise _corrupt(path, f"its header declares {dims[0]:,} images, more than the "
                             f"{max_count:,} of this split")


def _labels(path: Path, labels: np.ndarray, n: int, num_classes: int) -> Tensor:
    if labels.shape != (n,):
        raise _corrupt(path, f"{labels.shape[0] if labels.ndim else 0} labels for {n} images")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise _corrupt(path, f"label {bad} outside 0..{num_classes - 1}")
    return torch.from_numpy(labels.astype(np.int64))


def _read_idx_split(files: list[Path], info: catalog.DatasetInfo, max_count: int
                    ) -> tuple[Tensor, Tensor]:
    image_path, label_path = files
    images = _read_idx(image_path, info.shape[1:], None, max_count)
    raw_labels = _read_idx(label_path, (), len(images), max_count)
    labels = _labels(label_path, raw_labels, len(images), info.num_classes)
    return torch.from_numpy(images).unsqueeze(1), labels


# CIFAR pickles. A batch holds 3072 pixel bytes per image plus its labels and file name (under
# 100 bytes pickled); 1024 per image leaves room for any pickling of those, 1 MiB for the rest.
_CIFAR_BYTES_PER_IMAGE = 3072 + 1024
_CIFAR_SLACK = 1 << 20


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR batch never holds."""


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: the argument ``_reconstruct`` is called with.
    It cannot be called itself (numpy's would allocate any shape and dtype a file names)."""

    __slots__ = ()


class _Dtype:
    """``numpy.dtype('u1')`` as a pickle builds it; any other dtype is refused. Never handed
    to numpy, so the state the pickle sets on it cannot change what we build."""

    __slots__ = ()

    def __init__(self, code: object, align: object = False, copy: object = True) -> None:
        if code not in ("u1", b"u1"):
            what = repr(code) if isinstance(code, str | bytes) and len(code) < 20 else "another"
            raise _Refused(f"it holds an array of dtype {what}, not uint8")

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple):
            raise pickle.UnpicklingError("a dtype's state is not a tuple")


class _Array:
    """A uint8 array as a pickle rebuilds it: ``_reconstruct`` makes an empty one and
    ``BUILD`` gives it a shape and its bytes, which must match; we make the numpy array."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        # numpy writes (1, shape, dtype, fortran_order, data); very old versions left out the 1.
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError("an array's state is not (shape, dtype, order, data)")
        shape, dtype, fortran, data = state
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
            raise pickle.UnpicklingError("an array's shape is not a tuple of sizes")
        if not isinstance(dtype, _Dtype) or fortran not in (False, True):
            raise pickle.UnpicklingError("an array's dtype or order is not one numpy writes")
        if not isinstance(data, bytes) or len(data) != math.prod(shape):
            raise pickle.UnpicklingError(f"an array of shape {shape} does not hold "
                                         f"{math.prod(shape)} bytes")
        order: Literal["C", "F"] = "F" if fortran else "C"
        self.array = np.frombuffer(data, dtype=np.uint8).reshape(shape, order=order)


_NDARRAY = _NdarrayClass()


def _reconstruct(cls: object, shape: object, typecode: object) -> _Array:
    """numpy's ``_reconstruct`` as array pickles call it, with exactly these arguments."""
    if not isinstance(cls, _NdarrayClass) or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused("it calls numpy's _reconstruct with other arguments than an array's")
    return _Array()


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # The CIFAR pickles were written by Python 2 and hold only dicts, lists, str/bytes, ints and
    # one numpy uint8 array, which pickles as numpy.core.multiarray._reconstruct(numpy.ndarray,
    # ...) and a numpy.dtype (numpy 2 writes numpy._core). Those names are all we allow, and
    # each resolves to a stand-in above, not to numpy: numpy's own would build any array a
    # file describes (an object array of 10^9 Nones from a 100-byte file).
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _Dtype,
    }


# The opcodes a CIFAR batch pickled by Python 2 (protocol 2) or re-pickled by Python 3
# (protocols 2-4) uses: containers, strings, ints, globals and the memo. Sets, object creation
# outside REDUCE, extensions, persistent ids and out-of-band buffers are refused.
_PICKLE_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE",
    "INT", "BININT", "BININT1", "BININT2", "LONG1",
    "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "SETITEM", "SETITEMS", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
})

_Load = Callable[[Any], None]


def _refuse_opcode(name: str) -> _Load:
    def refuse(self: Any) -> None:
        raise _Refused(f"it uses the pickle opcode {name}")
    return refuse


def _leaf_only(load: _Load) -> _Load:
    """A memo read that refuses containers. Referring to one list (tuple, dict) from several
    places is how a 2 KB pickle stands for 10^9 labels or a dict key that takes minutes to
    hash; a CIFAR batch never shares one, so the objects we get are no bigger than the file."""
    def get(self: Any) -> None:
        load(self)
        if isinstance(self.stack[-1], list | tuple | dict):
            raise _Refused(f"it refers to one {type(self.stack[-1]).__name__} from several "
                           "places")
    return get


def _set_items(target: object, items: list[Any]) -> None:
    # String keys only: an int key can be made to collide with thousands of others
    # (quadratic time), and a str/bytes hash is randomized per process.
    if not isinstance(target, dict):
        raise pickle.UnpicklingError("SETITEMS on something that is not a dict")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, str | bytes):
            raise _Refused(f"it has a dict key that is a {type(key).__name__}, not a string")
        target[key] = value


def _load_setitem(self: Any) -> None:
    value = self.stack.pop()
    key = self.stack.pop()
    _set_items(self.stack[-1], [key, value])


def _load_setitems(self: Any) -> None:
    items = self.pop_mark()
    _set_items(self.stack[-1], items)


def _opcode_table() -> dict[int, _Load]:
    """The pure-Python unpickler's dispatch table, restricted to ``_PICKLE_OPCODES``."""
    base = pickle._Unpickler.dispatch  # undocumented, but there since Python 3.0

    def invalid(self: Any) -> None:
        raise pickle.UnpicklingError("invalid opcode")

    table: dict[int, _Load] = dict.fromkeys(range(256), invalid)
    for op in pickletools.opcodes:
        code = op.code.encode("latin-1")[0]
        table[code] = base[code] if op.name in _PICKLE_OPCODES else _refuse_opcode(op.name)
    for code in (pickle.GET[0], pickle.BINGET[0], pickle.LONG_BINGET[0]):
        table[code] = _leaf_only(base[code])
    table[pickle.SETITEM[0]] = _load_setitem
    table[pickle.SETITEMS[0]] = _load_setitems
    return table


class _CifarUnpickler(pickle._Unpickler):
    """Unpickles CIFAR batches, refusing every global outside ``_allowed_globals`` and every
    opcode outside ``_PICKLE_OPCODES``, and any memo reference to a container.

    A pickle can call any importable function (``os.system`` via ``__reduce__``), and even
    with only numpy's names allowed make a few bytes stand for gigabytes, so the data files
    are treated as untrusted input. Python's pure-Python unpickler is the one whose opcodes
    can be checked one by one; on a CIFAR batch it is as fast as the C one (its time goes into
    copying the one big pixel string).
    """

    _allowed = _allowed_globals()
    dispatch = _opcode_table()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"it asks for the Python object {module}.{name}") from None


def _unpickle(path: Path, max_count: int) -> Any:
    limit = max_count * _CIFAR_BYTES_PER_IMAGE + _CIFAR_SLACK
    data = _read_capped(path, limit, "a CIFAR batch of this split")
    try:
        return _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{path} was refused: {e}, which a CIFAR batch never does; the file is corrupt "
            f"or unsafe: delete it to re-download it"
        ) from e
    except Exception as e:
        # Garbage bytes can make the unpickler raise almost any exception type; all of them
        # mean the same thing here.
        raise _corrupt(path, f"cannot unpickle: {type(e).__name__}: {_one_line(e, 100)}") from e


def _get(d: dict[Any, Any], key: str) -> Any:
    # Python 2 wrote str keys, which encoding="bytes" returns as bytes; a file re-pickled by
    # Python 3 would have str keys. Both mean the same batch.
    return d[key.encode()] if key.encode() in d else d.get(key)


def _cifar_batch(path: Path, batch: Any, info: catalog.DatasetInfo) -> tuple[np.ndarray, Tensor]:
    """The images (N×3072 uint8) and labels of one unpickled batch, checked: ``data`` a uint8
    array, the labels a flat list of N ints in range."""
    label_key = "fine_labels" if info.num_classes == 100 else "labels"
    row = math.prod(info.shape)
    if not isinstance(batch, dict):
        raise _corrupt(path, f"holds a {type(batch).__name__}, not a dict")
    data, raw = _get(batch, "data"), _get(batch, label_key)
    if data is None or raw is None:
        raise _corrupt(path, f"no 'data' and {label_key!r} entries")
    images = data.array if isinstance(data, _Array) else None
    if images is None or images.ndim != 2 or images.shape[1] != row:
        shape = images.shape if images is not None else type(data).__name__
        raise _corrupt(path, f"'data' is {shape}, not uint8 N×{row}")
    if type(raw) is not list:
        raise _corrupt(path, f"{label_key!r} is a {type(raw).__name__}, not a list of integers")
    if len(raw) != len(images):
        raise _corrupt(path, f"{len(raw)} labels for {len(images)} images")
    for v in raw:  # type() is exact: no bools, no nested lists
        if type(v) is not int:
            raise _corrupt(path, f"{label_key!r} holds a {type(v).__name__}, not only integers")
        if not 0 <= v < info.num_classes:
            raise _corrupt(path, f"label {v} outside 0..{info.num_classes - 1}")
    return images, torch.tensor(raw, dtype=torch.int64)


def _read_cifar_split(files: list[Path], info: catalog.DatasetInfo, max_count: int
                      ) -> tuple[Tensor, Tensor]:
    xs: list[np.ndarray] = []
    ys: list[Tensor] = []
    for path in files:
        images, labels = _cifar_batch(path, _unpickle(path, max_count), info)
        if sum(map(len, xs)) + len(images) > max_count:
            raise _corrupt(path, f"its split would hold more than {max_count:,} images")
        # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: NCHW as is.
        xs.append(images.reshape(-1, *info.shape))
        ys.append(labels)
    # concatenate copies into one writable array (the unpickled ones are read-only views).
    return torch.from_numpy(np.concatenate(xs)), torch.cat(ys)


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet: its published folder of JPEGs, read in place and decoded once into a cache
#
# The reference code moves val/images/* into val/<wnid>/ (and deletes val_annotations.txt) so
# that torchvision's ImageFolder can read it: an interrupted run leaves the folder broken. We
# read the published layout as it is and write nothing inside the folder; the decoded arrays go
# to one file next to it, replaced atomically and rebuilt when any file read changes.

_TINY_MAX_JPEG = 1 << 20  # bytes: the published images are 1-4 KB each
_TINY_MAX_TEXT = 4 << 20  # wnids.txt is 2 KB, val_annotations.txt 300 KB
_TINY_CHUNK = 1024  # images decoded per batch of threads: a bad file stops the rest soon
_WNID = re.compile(r"[A-Za-z0-9_-]+")
_JPEG_SUFFIXES = (".jpeg", ".jpg")


def _tiny_fix(root: Path) -> str:
    return f"unzip a fresh copy of {TINY_IMAGENET_URL} into {root}"


def _tiny_incomplete(path: Path, why: str, root: Path) -> DataError:
    return DataError(f"tiny-imagenet is incomplete: {path} {why}; {_tiny_fix(root)}")


def tiny_imagenet_cache(data_dir: Path | None) -> Path:
    """The file Tiny ImageNet's decoded images are cached in (next to its folder): delete it
    to decode them again; it is rebuilt when any file of the folder changes."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return root / f"{_TINY_FOLDER}.prunetui-cache"


@dataclass(frozen=True)
class _TinyManifest:
    """Tiny ImageNet's folder as listed, nothing decoded: every image with its label, in the
    order of the arrays, and a key that changes when any file read changes."""

    root: Path
    train: list[tuple[str, int]]  # (path, label): str, not Path, for speed at 110,000 files
    test: list[tuple[str, int]]
    key: str


class _Stamps:
    """The cache key: each file's path in the folder, size and modification time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hash = hashlib.blake2b(digest_size=16)

    def add(self, rel: str, st: os.stat_result) -> None:
        """Stamp the file at ``rel`` (relative to the folder), whose ``stat`` is ``st``."""
        self.hash.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def _tiny_manifest(root: Path, info: catalog.DatasetInfo) -> _TinyManifest:
    """List Tiny ImageNet's folder and check its structure (classes, annotations, counts).

    Labels follow the sorted wnids, as torchvision's ImageFolder numbers the class folders in
    the reference code; train images are ordered by class then file name, val images too (the
    reference's val/<wnid>/ folders), so the arrays match what its loaders iterate over.
    """
    folder = root / _TINY_FOLDER
    stamps = _Stamps(folder)
    wnids = _tiny_wnids(stamps, "wnids.txt", info.num_classes, root)
    label_of = {w: i for i, w in enumerate(sorted(wnids))}
    train: list[tuple[str, int]] = []
    for wnid in sorted(wnids):
        images = folder / "train" / wnid / "images"
        names = _jpegs(stamps, f"train/{wnid}/images", info.train_size - len(train), root)
        if not names:
            raise _tiny_incomplete(images, "holds no .JPEG images", root)
        if len(train) + len(names) > info.train_size:
            raise _corrupt(images, f"the train split would hold more than {info.train_size:,} "
                                   "images", _tiny_fix(root))
        train += [(os.path.join(images, n), label_of[wnid]) for n in names]
    val = folder / "val" / "images"
    names = _jpegs(stamps, "val/images", info.test_size, root)
    if len(names) > info.test_size:
        raise _corrupt(val, f"more than the {info.test_size:,} val images", _tiny_fix(root))
    annotations = folder / "val" / "val_annotations.txt"
    label_of_file = _tiny_annotations(stamps, "val/val_annotations.txt", label_of,
                                      info.test_size, root)
    present = set(names)
    for name in names:
        if name not in label_of_file:
            raise _corrupt(annotations, f"no line for {name} of {val}", _tiny_fix(root))
    for name in sorted(label_of_file):
        if name not in present:
            raise _tiny_incomplete(val / name, "is missing (val_annotations.txt names it)", root)
    order = sorted(names, key=lambda n: (label_of_file[n], n))
    test = [(os.path.join(val, n), label_of_file[n]) for n in order]
    return _TinyManifest(root, train, test, stamps.hash.hexdigest())


def _jpegs(stamps: _Stamps, rel: str, limit: int, root: Path) -> list[str]:
    """The sorted names of the JPEGs in the folder's ``rel`` directory, at most ``limit + 1``
    (more is refused by the caller: listing stops there, whatever the folder holds)."""
    directory = stamps.folder / rel
    if not directory.is_dir():
        raise _tiny_incomplete(directory, "is missing", root)
    found: list[tuple[str, os.stat_result]] = []
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                if e.name.lower().endswith(_JPEG_SUFFIXES) and e.is_file():
                    found.append((e.name, e.stat()))
                    if len(found) > limit:
                        break
    except OSError as e:
        raise _cannot_read(directory, e) from e
    found.sort(key=lambda f: f[0])
    for name, st in found:
        stamps.add(f"{rel}/{name}", st)
    return [name for name, _ in found]


def _tiny_lines(stamps: _Stamps, rel: str, root: Path) -> list[str]:
    path = stamps.folder / rel
    if not path.is_file():
        raise _tiny_incomplete(path, "is missing", root)
    data = _read_capped(path, _TINY_MAX_TEXT, "this Tiny ImageNet file", _tiny_fix(root))
    try:
        stamps.add(rel, path.stat())
        return data.decode("utf-8").splitlines()
    except OSError as e:
        raise _cannot_read(path, e) from e
    except UnicodeDecodeError as e:
        raise _corrupt(path, f"not text: {_one_line(e, 80)}", _tiny_fix(root)) from e


def _tiny_wnids(stamps: _Stamps, rel: str, num_classes: int, root: Path) -> list[str]:
    """The class ids of wnids.txt: one per line, distinct, at most ``num_classes``."""
    path = stamps.folder / rel
    wnids: list[str] = []
    for n, line in enumerate(_tiny_lines(stamps, rel, root), start=1):
        w = line.strip()
        if not w:
            continue
        why = ("is not a wnid" if not _WNID.fullmatch(w) else
               "is listed twice" if w in wnids else
               f"is class {len(wnids) + 1}, more than {num_classes}"
               if len(wnids) == num_classes else "")
        if why:
            raise _corrupt(path, f"line {n}: {w[:40]!r} {why}", _tiny_fix(root))
        wnids.append(w)
    if not wnids:
        raise _corrupt(path, "it lists no classes", _tiny_fix(root))
    return wnids


def _tiny_annotations(stamps: _Stamps, rel: str, label_of: dict[str, int], limit: int,
                      root: Path) -> dict[str, int]:
    """val_annotations.txt: the label of each val image, from lines ``file<TAB>wnid<TAB>box``."""
    path = stamps.folder / rel
    out: dict[str, int] = {}
    for n, line in enumerate(_tiny_lines(stamps, rel, root), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        name, wnid = fields[0], fields[1] if len(fields) > 1 else ""
        why = ("is not 'file<TAB>wnid<TAB>box'" if not wnid else
               "does not name a file of val/images" if (
                   name in ("", ".", "..") or "/" in name or "\\" in name) else
               f"names class {wnid[:40]!r}, which wnids.txt does not list"
               if wnid not in label_of else
               f"annotates {name[:40]} again" if name in out else
               f"annotates more than {limit:,} images" if len(out) == limit else "")
        if why:
            raise _corrupt(path, f"line {n} {why}", _tiny_fix(root))
        out[name] = label_of[wnid]
    return out


def _decode_jpegs(items: list[tuple[str, int]], info: catalog.DatasetInfo, root: Path
                  ) -> tuple[np.ndarray, list[bytes]]:
    """Decode ``items``' JPEGs into one N×3×H×W uint8 array (grayscale ones made RGB, as the
    reference's loader does), with a digest of each file's bytes. Threads: the decoding and
    reading release the GIL."""
    from PIL import Image  # a dependency of torchvision; only this dataset needs it

    out = np.empty((len(items), *info.shape), dtype=np.uint8)
    h, w = info.shape[1:]
    fix = _tiny_fix(root)

    def decode(i: int) -> bytes:
        path = items[i][0]
        blob = _read_capped(path, _TINY_MAX_JPEG, "a Tiny ImageNet image", fix)
        try:
            with Image.open(io.BytesIO(blob), formats=["JPEG"]) as im:
                if im.size != (w, h):  # from the header, before anything is decoded
                    raise _corrupt(path, f"a {im.size[0]}x{im.size[1]} image, not {w}x{h}", fix)
                out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _corrupt(path, f"its header declares a huge image, not {w}x{h}", fix) from e
        except Exception as e:  # a broken file makes PIL raise many types
            raise _corrupt(path, f"not a readable JPEG: {type(e).__name__}: "
                                 f"{_one_line(e, 80)}", fix) from e
        return hashlib.blake2b(blob, digest_size=16).digest()

    digests: list[bytes] = []
    with warnings.catch_warnings(), ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        # Core prints nothing; a huge declared size is an error, not a warning on stderr.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for lo in range(0, len(items), _TINY_CHUNK):
            digests += pool.map(decode, range(lo, min(lo + _TINY_CHUNK, len(items))))
    return out, digests


def _labels_of(items: list[tuple[str, int]]) -> Tensor:
    return torch.tensor([label for _, label in items], dtype=torch.int64)


def _tiny_digest(manifest: _TinyManifest, train: list[bytes], test: list[bytes]) -> str:
    """The fingerprint digest: the JPEG files' bytes and the labels, in the arrays' order."""
    h = hashlib.blake2b(digest_size=8)
    for items, digests in ((manifest.train, train), (manifest.test, test)):
        h.update(len(digests).to_bytes(8, "little"))
        h.update(b"".join(digests))
        h.update(_labels_of(items).numpy().tobytes())
    return h.hexdigest()


# The cache: this magic line, the length of a JSON header (4 bytes, little endian), the header
# (version, key, digest, train and test counts, image shape), then the train and test images as
# raw uint8 bytes: one read into one array, much faster than an .npz's zip members.
_CACHE_MAGIC = b"prunetui tiny-imagenet cache\n"
_CACHE_VERSION = 1  # bump when what the cache holds changes: older caches are rebuilt


def _cache_header(manifest: _TinyManifest, info: catalog.DatasetInfo, digest: str) -> bytes:
    header = json.dumps({"version": _CACHE_VERSION, "key": manifest.key, "digest": digest,
                         "train": len(manifest.train), "test": len(manifest.test),
                         "shape": list(info.shape)}).encode()
    return _CACHE_MAGIC + len(header).to_bytes(4, "little") + header


def _read_cache(manifest: _TinyManifest, info: catalog.DatasetInfo, images: bool
                ) -> tuple[str, np.ndarray | None] | None:
    """The digest, and with ``images`` the train and test images in one N×C×H×W array, when
    the cache is of the folder as it is now; None when it is absent, stale or damaged."""
    path = tiny_imagenet_cache(manifest.root)
    with contextlib.suppress(OSError), open(path, "rb", buffering=0) as f:  # see _idx_stream
        if f.read(len(_CACHE_MAGIC)) != _CACHE_MAGIC:
            return None
        length = f.read(4)
        header = f.read(min(int.from_bytes(length, "little"), 4096))
        try:
            digest = json.loads(header)["digest"]
        except (ValueError, TypeError, KeyError):
            return None
        # The header written for this folder and digest, byte for byte, or the cache is stale.
        expected = _cache_header(manifest, info, str(digest))
        if expected != _CACHE_MAGIC + length + header:
            return None
        if not images:
            return str(digest), None
        n = len(manifest.train) + len(manifest.test)
        if os.fstat(f.fileno()).st_size != len(expected) + n * math.prod(info.shape):
            return None
        out = np.empty((n, *info.shape), dtype=np.uint8)
        with out.data.cast("B") as view:
            if _fill(f, view) != len(view):
                return None
        return str(digest), out
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its directory opened read-only: nothing is
    written), so that parallel runs wait for one decode instead of each decoding. Where
    locks are not supported (some network file systems), it goes on unlocked."""
    fd: int | None = None
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _tiny_arrays(root: Path, info: catalog.DatasetInfo
                 ) -> tuple[_TinyManifest, np.ndarray, str]:
    """The folder's manifest, its train then test images in one array, and the digest: from
    the cache, else decoded and cached."""
    manifest = _tiny_manifest(root, info)
    cached = _read_cache(manifest, info, images=True)
    if cached is None:
        with _locked(root / _TINY_FOLDER):
            cached = _read_cache(manifest, info, images=True)  # another process made it?
            if cached is None:
                # One array for both splits: no second 1.35 GB copy to join them.
                decoded, digests = _decode_jpegs(manifest.train + manifest.test, info, root)
                n = len(manifest.train)
                cached = _tiny_digest(manifest, digests[:n], digests[n:]), decoded
                _write_cache(manifest, info, decoded, cached[0])
    digest, images = cached
    assert images is not None
    return manifest, images, digest


def _write_cache(manifest: _TinyManifest, info: catalog.DatasetInfo, images: np.ndarray,
                 digest: str) -> None:
    def write(f: BinaryIO) -> None:
        f.write(_cache_header(manifest, info, digest))
        f.write(np.ascontiguousarray(images).data.cast("B"))

    # A data dir we cannot write to (or a full disk) only means decoding again next time.
    with contextlib.suppress(OSError):
        atomic_write(tiny_imagenet_cache(manifest.root), write)


def _load_tiny_imagenet(root: Path, info: catalog.DatasetInfo) -> Splits:
    """Tiny ImageNet from ``root/tiny-imagenet-200`` in its published layout: ``wnids.txt``,
    ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` labelled by
    ``val/val_annotations.txt`` (our test split). Normalization and augmentation (4-pixel
    padded random 64x64 crop, horizontal flip) are the reference code's."""
    manifest, images, digest = _tiny_arrays(root, info)
    x = torch.from_numpy(images)
    n = len(manifest.train)
    return Splits(x[:n], _labels_of(manifest.train), x[n:], _labels_of(manifest.test), info,
                  digest)


def _tiny_fingerprint(root: Path, info: catalog.DatasetInfo) -> dict[str, Any]:
    """``fingerprint`` of Tiny ImageNet as the folder holds it now, without loading its images
    when the cache is fresh; once per process and state of its directories."""
    return _tiny_fingerprint_of(root, info, _tiny_dir_stamps(root / _TINY_FOLDER))


def _tiny_dir_stamps(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of the text files and of every image directory: a directory's mtime
    changes when a file in it is added, removed or renamed. 200 stats, not 110,000: the key
    of ``_tiny_fingerprint_of`` (an image rewritten in place is seen by the next process;
    ``load_dataset`` checks every file each time)."""
    dirs = [folder / "wnids.txt", folder / "val" / "val_annotations.txt", folder / "val" /
            "images", folder / "train"]
    with contextlib.suppress(OSError), os.scandir(folder / "train") as entries:
        dirs += sorted(Path(e.path) / "images" for e in entries)
    stamps = []
    for d in dirs:
        with contextlib.suppress(OSError):
            st = d.stat()
            stamps.append((str(d), st.st_size, st.st_mtime_ns))
    return tuple(stamps)


@functools.lru_cache(maxsize=8)
def _tiny_fingerprint_of(root: Path, info: catalog.DatasetInfo,
                         stamps: tuple[tuple[str, int, int], ...]) -> dict[str, Any]:
    manifest = _tiny_manifest(root, info)
    cached = _read_cache(manifest, info, images=False)
    if cached is None:
        manifest, _, digest = _tiny_arrays(root, info)
    else:
        digest = cached[0]
    return {"train": len(manifest.train), "test": len(manifest.test), "digest": digest}


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits


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
