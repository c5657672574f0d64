"""Dataset loading from torchvision's on-disk formats, download failures, and the DeviceLoader."""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import shutil
import socket
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from datafiles import (
    MNIST_FILES,
    TINY_WNIDS,
    cifar_dir,
    class_images,
    mnist_raw_dir,
    tiny_dir,
    write_cifar,
    write_idx,
    write_jpeg,
    write_mnist,
    write_tiny_imagenet,
)

from prunetui.core import catalog, data
from prunetui.core.data import (
    DeviceLoader,
    Splits,
    crop_flip,
    current_fingerprint,
    default_data_dir,
    find_files,
    fingerprint,
    load_dataset,
    make_loaders,
    normalize,
    prune_batch,
)
from prunetui.core.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails, as on a machine without a network."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# Data dir


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRUNETUI_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("PRUNETUI_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "prunetui" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "prunetui" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "prunetui" / "data"


def test_data_dir_none_uses_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_mnist(tmp_path)
    monkeypatch.setenv("PRUNETUI_DATA", str(tmp_path))
    assert load_dataset("mnist", None, download=False).train_x.shape[0] == 60


def test_unknown_dataset_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", tmp_path)


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST idx files


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.RandomState(3)
    raw = mnist_raw_dir(tmp_path)
    arrays = {}
    for prefix, n in (("train", 30), ("t10k", 12)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[prefix] = (images, labels)
    assert (raw / "train-images-idx3-ubyte.gz").exists() == gz
    s = load_dataset("mnist", tmp_path, download=False)
    assert s.info is catalog.DATASETS["mnist"]
    for x, y, (images, labels) in (
        (s.train_x, s.train_y, arrays["train"]),
        (s.test_x, s.test_y, arrays["t10k"]),
    ):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape == (len(images), 1, 28, 28) and y.shape == (len(images),)
        assert torch.equal(x[:, 0], torch.from_numpy(images))
        assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))


def test_mnist_matches_torchvision_reader(tmp_path: Path) -> None:
    # torchvision's own MNIST class reads the helper's files (no download: they are present).
    write_mnist(tmp_path, train=40, test=10)
    s = load_dataset("mnist", tmp_path, download=False)
    for train, x, y in ((True, s.train_x, s.train_y), (False, s.test_x, s.test_y)):
        tv = torchvision.datasets.MNIST(str(tmp_path), train=train)
        assert torch.equal(x[:, 0], tv.data)
        assert torch.equal(y, tv.targets)


def test_fashion_mnist(tmp_path: Path) -> None:
    write_mnist(tmp_path, name="fashion-mnist", train=30, test=10, gz=True)
    s = load_dataset("fashion-mnist", tmp_path, download=False)
    assert s.train_x.shape == (30, 1, 28, 28) and s.test_x.shape == (10, 1, 28, 28)
    assert s.info.name == "fashion-mnist"
    assert sorted(s.train_y.tolist()) == sorted(list(range(10)) * 3)
    # Fashion-MNIST's folder is its own: plain MNIST is still missing.
    with pytest.raises(DataError):
        load_dataset("mnist", tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# CIFAR pickles


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_round_trip(tmp_path: Path, name: str) -> None:
    write_cifar(tmp_path, name=name, train=50, test=20, seed=4)
    s = load_dataset(name, tmp_path, download=False)
    assert s.train_x.shape == (50, 3, 32, 32) and s.test_x.shape == (20, 3, 32, 32)
    assert s.train_x.dtype == torch.uint8 and s.train_y.dtype == torch.int64
    # Reference: the files read the way torchvision reads them (plain pickle, latin1).
    folder = cifar_dir(tmp_path, name)
    files = (
        [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"],
        ["test_batch"] if name == "cifar10" else ["test"],
    )
    key = "labels" if name == "cifar10" else "fine_labels"
    for names, x, y in ((files[0], s.train_x, s.train_y), (files[1], s.test_x, s.test_y)):
        batches = [pickle.loads((folder / f).read_bytes(), encoding="latin1") for f in names]
        ref_x = np.concatenate([b["data"] for b in batches])
        ref_y = [label for b in batches for label in b[key]]
        assert y.tolist() == ref_y
        # Each row is the red plane, then green, then blue, each 32x32 row-major.
        assert torch.equal(x.reshape(len(x), -1), torch.from_numpy(ref_x))
        assert x[3, 1, 2, 5] == ref_x[3, 1024 + 2 * 32 + 5]
    assert s.train_y.max() < s.info.num_classes


def test_py2_pickle_uses_the_real_files_globals(tmp_path: Path) -> None:
    import pickletools

    write_cifar(tmp_path, train=5, test=5)
    blob = (cifar_dir(tmp_path) / "test_batch").read_bytes()
    globals_ = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_unpickler_allows_exactly_numpy_array_globals() -> None:
    assert set(data._CifarUnpickler._allowed) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": _Evil(marker), b"labels": [0]}
    target = cifar_dir(tmp_path) / "data_batch_2"
    target.write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path, download=False)
    msg = one_line(e)
    assert str(target) in msg and "system" in msg and "refused" in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"this is not a pickle at all", "cannot unpickle"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=4)[:-20], "unpickle"),
        (pickle.dumps([1, 2, 3], protocol=2), "not a dict"),
        (pickle.dumps({b"data": 1, b"nope": [0]}, protocol=4), "entries"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 4), "'data'"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, 4), "labels"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, 4), "label 10"),
    ],
)
def test_garbage_pickle_is_corrupt(tmp_path: Path, payload: bytes, why: str) -> None:
    write_cifar(tmp_path)
    target = cifar_dir(tmp_path) / "test_batch"
    target.write_bytes(payload)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path, download=False)
    msg = one_line(e)
    assert str(target) in msg and "corrupt" in msg and why in msg and "delete it" in msg


def test_numpy2_written_pickle_also_loads(tmp_path: Path) -> None:
    # A batch re-pickled by Python 3/numpy 2 (str keys, numpy._core) holds the same data.
    write_cifar(tmp_path, name="cifar100", train=20, test=10)
    folder = cifar_dir(tmp_path, "cifar100")
    ref = pickle.loads((folder / "test").read_bytes(), encoding="latin1")
    (folder / "test").write_bytes(pickle.dumps(ref, protocol=4))
    s = load_dataset("cifar100", tmp_path, download=False)
    assert s.test_y.tolist() == ref["fine_labels"]
    assert torch.equal(s.test_x.reshape(10, -1), torch.from_numpy(ref["data"]))


# ---------------------------------------------------------------------------------------------
# Corrupt idx files


def _corrupt_message(root: Path, name: str = "mnist") -> tuple[str, Path]:
    with pytest.raises(DataError) as e:
        load_dataset(name, root, download=False)
    return one_line(e), root


def test_truncated_idx_is_corrupt(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    target = mnist_raw_dir(tmp_path) / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    msg, _ = _corrupt_message(tmp_path)
    assert str(target) in msg and "corrupt" in msg and "delete it" in msg and "bytes" in msg


def test_bad_magic_and_mismatched_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = mnist_raw_dir(tmp_path) / "t10k-labels-idx1-ubyte"
    blob = labels.read_bytes()
    labels.write_bytes(b"\x00\x00\x09\x01" + blob[4:])
    msg, _ = _corrupt_message(tmp_path)
    assert str(labels) in msg and "magic" in msg
    write_idx(labels, np.zeros(3, np.uint8))  # 3 labels for 20 images
    msg, _ = _corrupt_message(tmp_path)
    assert str(labels) in msg and "3 labels for 20 images" in msg
    write_idx(labels, np.full(20, 10, np.uint8))
    msg, _ = _corrupt_message(tmp_path)
    assert "label 10" in msg
    images = mnist_raw_dir(tmp_path) / "t10k-images-idx3-ubyte"
    write_idx(images, np.zeros((20, 32, 32), np.uint8))
    msg, _ = _corrupt_message(tmp_path)
    assert str(images) in msg and "32x32" in msg


def test_bad_gzip_is_corrupt(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    target = mnist_raw_dir(tmp_path) / "train-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 50)[:-8])
    msg, _ = _corrupt_message(tmp_path)
    assert str(target) in msg and "corrupt" in msg


# ---------------------------------------------------------------------------------------------
# Malformed files of every kind: one line naming the file, in bounded memory


def bounded_error(root: Path, name: str, limit_mb: int = 16) -> str:
    """Load ``name``: it must fail with one DataError line while Python and numpy allocate at
    most ``limit_mb`` MB at once (tracemalloc sees both), whatever the file claims to hold."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            load_dataset(name, root, download=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit_mb << 20, f"{peak / 2**20:.0f} MB allocated before the error"
    return one_line(e)


class _Reduce:
    """Pickles as ``func(*args)``, with ``func`` by its importable name."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


def _shared(depth: int, width: int, leaf: Any, kind: type = list) -> Any:
    """A ``kind`` of ``width`` references to one ``kind`` of ... (``depth`` levels): a few
    bytes pickled, ``width ** depth`` leaves unpickled."""
    node = leaf
    for _ in range(depth):
        node = kind([node] * width)
    return node


_TEST_BATCH = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}

_CIFAR_BOMBS = {
    # The file: a 2 KB pickle whose labels are nested shared lists (8 million labels).
    "shared nested labels": (
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": _shared(3, 200, 0)},
        "refers to one list from several places"),
    # numpy's _reconstruct allocates (and for dtype object fills) whatever shape it is given.
    "object array from _reconstruct": (
        {b"data": _Reduce(np.zeros(0).__reduce__()[0], np.ndarray, (10**7,), b"O"),
         b"labels": [0]}, "_reconstruct with other arguments"),
    "ndarray called directly": (
        {b"data": _Reduce(np.ndarray, (10**7,), "O"), b"labels": [0]}, "cannot unpickle"),
    "dtype other than uint8": (
        {b"data": np.zeros((2, 384), np.float64), b"labels": [0, 1]}, "dtype"),
    # A key that takes a million hash steps (10^12 with a few more bytes); the rest is valid.
    "shared tuple as a dict key": ({**_TEST_BATCH, _shared(3, 100, 0, tuple): 0}, "tuple"),
    # Int keys can be made to collide (quadratic inserts); a CIFAR batch's keys are strings.
    "int dict key": ({**_TEST_BATCH, 7: 0}, "dict key that is a int"),
    "set": ({**_TEST_BATCH, b"x": {1, 2}}, "EMPTY_SET"),
}


@pytest.mark.parametrize("case", list(_CIFAR_BOMBS))
def test_cifar_pickle_bombs_are_refused_in_bounded_memory(tmp_path: Path, case: str) -> None:
    payload, why = _CIFAR_BOMBS[case]
    write_cifar(tmp_path)
    target = cifar_dir(tmp_path) / "data_batch_1"
    target.write_bytes(pickle.dumps(payload, protocol=4))
    assert target.stat().st_size < 8192  # 6 KB of it the valid 2-image 'data'
    msg = bounded_error(tmp_path, "cifar10")
    assert str(target) in msg and why in msg


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ([[0], [1]], "'labels' holds a list, not only integers"),
        ([True, False], "'labels' holds a bool, not only integers"),
        (b"\x00\x01", "'labels' is a bytes, not a list of integers"),
        ((0, 1), "'labels' is a tuple, not a list of integers"),
        ([0, -1], "label -1 outside 0..9"),
    ],
)
def test_cifar_labels_must_be_a_flat_list_of_ints(tmp_path: Path, labels: Any, why: str) -> None:
    write_cifar(tmp_path)
    target = cifar_dir(tmp_path) / "test_batch"
    target.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels},
                                    protocol=4))
    msg = bounded_error(tmp_path, "cifar10")
    assert str(target) in msg and why in msg


def test_fortran_ordered_array_loads(tmp_path: Path) -> None:
    # numpy pickles an F-contiguous array in F order; our stand-in reads it back the same.
    write_cifar(tmp_path, name="cifar100", train=20, test=10)
    folder = cifar_dir(tmp_path, "cifar100")
    ref = pickle.loads((folder / "test").read_bytes(), encoding="latin1")
    f_order = dict(ref, data=np.asfortranarray(ref["data"]))
    (folder / "test").write_bytes(pickle.dumps(f_order, protocol=4))
    s = load_dataset("cifar100", tmp_path, download=False)
    assert torch.equal(s.test_x.reshape(10, -1), torch.from_numpy(ref["data"]))


def test_oversized_cifar_file_is_refused_unread(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    target = cifar_dir(tmp_path) / "test_batch"
    with open(target, "r+b") as f:  # sparse: no disk space, 100 MB to a reader
        f.truncate(100 << 20)
    msg = bounded_error(tmp_path, "cifar10")
    assert str(target) in msg and "more than a CIFAR batch of this split can hold" in msg


def _idx(dims: tuple[int, ...], body: bytes = b"", magic: bytes = b"\x00\x00\x08") -> bytes:
    return magic + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def _gzip_bomb(head: bytes, mb: int) -> bytes:
    # gzip members concatenate: one member of 1 MB of zeros (1 KB compressed), repeated.
    return gzip.compress(head) + gzip.compress(bytes(1 << 20)) * mb


_IMAGES = "train-images-idx3-ubyte"
_IDX_CASES: dict[str, tuple[str, bytes, str]] = {
    "gzip bomb after good data": (
        _IMAGES + ".gz", _gzip_bomb(_idx((60, 28, 28), bytes(60 * 784)), 64),
        "header says 47056 bytes, the data has more"),
    "gzip bomb declaring 4 billion images": (
        _IMAGES + ".gz", _gzip_bomb(_idx((2**32 - 1, 28, 28)), 64),
        "declares 4,294,967,295 images, more than the 60,000 of this split"),
    "huge declared count": (
        _IMAGES, _idx((2**32 - 1, 28, 28), bytes(784)), "declares 4,294,967,295 images"),
    "huge declared image size": (_IMAGES, _idx((1, 60000, 60000)), "60000x60000, not 28x28"),
    "wrong number of dims": (_IMAGES, _idx((60, 784), bytes(60 * 784)), "magic number"),
    "wrong element type": (_IMAGES, _idx((60, 28, 28), bytes(60 * 784), b"\x00\x00\x0d"),
                           "magic number 0x00000d03"),
    "empty file": (_IMAGES, b"", "0 bytes, shorter than its header"),
    "truncated gzip": (_IMAGES + ".gz", gzip.compress(_idx((60, 28, 28), bytes(60 * 784)))[:-30],
                       "bad gzip data"),
    "not gzip": (_IMAGES + ".gz", _idx((60, 28, 28), bytes(60 * 784)), "bad gzip data"),
    "gzip with fewer images than its header": (
        _IMAGES + ".gz", gzip.compress(_idx((60, 28, 28), bytes(10 * 784))),
        "header says 47056 bytes, the data has 7856"),
    "labels declare a huge count": (
        "train-labels-idx1-ubyte", _idx((2**32 - 1,), bytes(60)), "4294967295 labels for 60"),
}


@pytest.mark.parametrize("case", list(_IDX_CASES))
def test_malformed_idx_is_one_bounded_line(tmp_path: Path, case: str) -> None:
    name, blob, why = _IDX_CASES[case]
    write_mnist(tmp_path)
    raw = mnist_raw_dir(tmp_path)
    target = raw / name
    (raw / name.removesuffix(".gz")).unlink()
    target.write_bytes(blob)
    msg = bounded_error(tmp_path, "mnist")
    assert str(target) in msg and "corrupt" in msg and why in msg


def test_oversized_raw_idx_is_refused_unread(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    target = mnist_raw_dir(tmp_path) / _IMAGES
    with open(target, "r+b") as f:  # a good header for 60 images, then 200 MB (sparse)
        f.truncate(200 << 20)
    msg = bounded_error(tmp_path, "mnist")
    assert str(target) in msg and f"the file has {200 << 20}" in msg


# ---------------------------------------------------------------------------------------------
# Missing files and downloads


def test_missing_without_download(tmp_path: Path) -> None:
    for name, expected in (
        ("mnist", tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"),
        ("fashion-mnist", tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"),
        ("cifar10", tmp_path / "cifar-10-batches-py" / "data_batch_1"),
        ("cifar100", tmp_path / "cifar-100-python" / "train"),
    ):
        with pytest.raises(DataError) as e:
            load_dataset(name, tmp_path, download=False)
        msg = one_line(e)
        assert name in msg and str(expected) in msg and e.value.field == "data_dir"
    assert not (tmp_path / "MNIST").exists()  # download=False never writes


def test_one_missing_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (mnist_raw_dir(tmp_path) / MNIST_FILES[3]).unlink()
    with pytest.raises(DataError, match=MNIST_FILES[3]) as e:
        load_dataset("mnist", tmp_path, download=False)
    assert "more file" not in one_line(e)


@pytest.mark.parametrize("cls", ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100"])
def test_download_failure_is_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: str
) -> None:
    calls: list[tuple[str, bool]] = []

    class Offline:
        def __init__(self, root: str, download: bool = False, **kwargs: Any) -> None:
            calls.append((root, download))
            raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, cls, Offline)
    name = {"MNIST": "mnist", "FashionMNIST": "fashion-mnist"}.get(cls, cls.lower())
    with pytest.raises(DataError) as e:
        load_dataset(name, tmp_path / "data", download=True)
    msg = one_line(e)
    assert calls == [(str(tmp_path / "data"), True)]
    assert name in msg and str(tmp_path / "data") in msg and "connect to a network" in msg
    assert "the dataset digits is bundled (no download)" in msg
    assert "name resolution" in msg
    assert not (tmp_path / "data").exists()  # the folders made for the download are gone


@pytest.mark.parametrize("module", ["mnist", "cifar"])
def test_real_torchvision_download_path_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    # The genuine torchvision classes run; only their fetch function fails like a dead network.
    def offline(url: str, *args: Any, **kwargs: Any) -> None:
        raise URLError(f"cannot reach {url}")

    monkeypatch.setattr(getattr(torchvision.datasets, module), "download_and_extract_archive",
                        offline)
    name = "mnist" if module == "mnist" else "cifar10"
    with pytest.raises(DataError) as e:
        load_dataset(name, tmp_path, download=True)
    msg = one_line(e)
    assert "downloading it failed" in msg and "connect to a network" in msg
    assert not any(tmp_path.iterdir())  # torchvision's MNIST/raw, made before the fetch: gone


def test_download_then_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeDownload:
        def __init__(self, root: str, download: bool = False, **kwargs: Any) -> None:
            print("Downloading ...")  # torchvision's chatter must not reach stdout
            write_cifar(Path(root), train=10, test=5)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeDownload)
    s = load_dataset("cifar10", tmp_path / "new" / "dir", download=True)
    assert s.train_x.shape == (10, 3, 32, 32) and s.test_x.shape == (5, 3, 32, 32)


def test_download_chatter_goes_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FakeDownload:
        def __init__(self, root: str, download: bool = False, **kwargs: Any) -> None:
            print("Downloading ...")
            write_mnist(Path(root), train=10, test=5)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeDownload)
    load_dataset("mnist", tmp_path, download=True)
    out, err = capsys.readouterr()
    assert out == "" and "Downloading" in err


def test_download_that_leaves_files_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Incomplete:
        def __init__(self, root: str, download: bool = False, **kwargs: Any) -> None:
            write_mnist(Path(root))
            (mnist_raw_dir(Path(root)) / MNIST_FILES[0]).unlink()

    monkeypatch.setattr(torchvision.datasets, "MNIST", Incomplete)
    with pytest.raises(DataError, match=r"did not produce .*train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path, download=True)


def test_present_files_are_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("must not download")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", boom)
    write_cifar(tmp_path, name="cifar100", train=10, test=5)
    assert load_dataset("cifar100", tmp_path, download=True).train_x.shape[0] == 10


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet


def _decoded(path: Path) -> torch.Tensor:
    """A JPEG as PIL decodes it, RGB, C×H×W (what ImageFolder's loader gives, before ToTensor)."""
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy())


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()} | {
        str(p.relative_to(folder)) + "/": (b"", p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_dir()}


def test_tiny_imagenet_loads_the_published_layout(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path, classes=3, per_class=4, val=6)
    folder = tiny_dir(tmp_path)
    s = load_dataset("tiny-imagenet", tmp_path, download=False)
    assert s.info is catalog.DATASETS["tiny-imagenet"] and s.info.shape == (3, 64, 64)
    assert s.train_x.shape == (12, 3, 64, 64) and s.test_x.shape == (6, 3, 64, 64)
    assert s.train_x.dtype == torch.uint8 and s.train_y.dtype == torch.int64
    # wnids.txt lists n09999999, n01443537, n04067472: labels are their sorted order (as
    # ImageFolder numbers the class folders), train in class then file name order.
    wnids = sorted(TINY_WNIDS[:3])
    assert s.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    train_files = [folder / "train" / w / "images" / f"{w}_{i}.JPEG" for w in wnids
                   for i in range(4)]
    assert torch.equal(s.train_x, torch.stack([_decoded(p) for p in train_files]))
    # val: labels from val_annotations.txt (val_i is wnids.txt's class i % 3), ordered by class.
    listed = list(TINY_WNIDS[:3])
    val = sorted(range(6), key=lambda i: (wnids.index(listed[i % 3]), f"val_{i}.JPEG"))
    assert s.test_y.tolist() == [wnids.index(listed[i % 3]) for i in val] == [0, 0, 1, 1, 2, 2]
    assert torch.equal(s.test_x, torch.stack(
        [_decoded(folder / "val" / "images" / f"val_{i}.JPEG") for i in val]))
    # The grayscale JPEGs (train n09999999_0, val_1) are RGB with three equal channels.
    gray = s.train_x[train_files.index(folder / "train" / "n09999999" / "images" /
                                       "n09999999_0.JPEG")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert find_files("tiny-imagenet", tmp_path) == f"found in {folder}"


def test_tiny_imagenet_through_the_device_loader(tmp_path: Path) -> None:
    s = load_dataset("tiny-imagenet", write_tiny_imagenet(tmp_path), download=False)
    train, test = make_loaders(s, 5, 4, "cpu", torch.Generator().manual_seed(0))
    assert train.augment and not test.augment
    xb, yb = next(iter(train))
    assert xb.shape == (5, 3, 64, 64) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    xs, ys = _epoch(test)
    assert torch.equal(ys, s.test_y)
    assert torch.allclose(xs, normalize(s.test_x, (0.480, 0.448, 0.397), (0.276, 0.269, 0.282)))


def test_tiny_imagenet_leaves_its_folder_untouched(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    folder = tiny_dir(tmp_path)
    before = _snapshot(folder)
    load_dataset("tiny-imagenet", tmp_path, download=False)
    load_dataset("tiny-imagenet", tmp_path, download=False)
    assert _snapshot(folder) == before
    # Only the cache is added, next to the folder; no temporary file is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [folder.name, data.tiny_imagenet_cache(tmp_path).name])


def test_tiny_imagenet_decodes_once_then_reads_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_imagenet(tmp_path)
    first = load_dataset("tiny-imagenet", tmp_path, download=False)
    assert data.tiny_imagenet_cache(tmp_path).is_file()
    decode = data._decode_jpegs
    calls: list[int] = []

    def counting(items: Any, *args: Any) -> Any:
        calls.append(len(items))
        return decode(items, *args)

    monkeypatch.setattr(data, "_decode_jpegs", counting)
    again = load_dataset("tiny-imagenet", tmp_path, download=False)
    assert calls == []  # served from the cache
    for t in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, t), getattr(again, t))
    assert fingerprint(again) == fingerprint(first)


def test_tiny_imagenet_cache_follows_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_imagenet(tmp_path)
    folder = tiny_dir(tmp_path)
    first = load_dataset("tiny-imagenet", tmp_path, download=False)
    # A train image rewritten (another picture): decoded again, and the fingerprint moves.
    target = folder / "train" / "n01443537" / "images" / "n01443537_2.JPEG"
    write_jpeg(target, np.full((3, 64, 64), 200, np.uint8))
    os.utime(target, ns=(1, 1))  # a distinct mtime, whatever the file system's resolution
    s = load_dataset("tiny-imagenet", tmp_path, download=False)
    assert torch.equal(s.train_x[2], _decoded(target))
    assert not torch.equal(s.train_x[2], first.train_x[2])
    assert torch.equal(s.train_x[3:], first.train_x[3:])
    assert fingerprint(s)["digest"] != fingerprint(first)["digest"]
    # A val image relabelled in val_annotations.txt: the labels follow.
    annotations = folder / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("val_0.JPEG\tn09999999",
                                                           "val_0.JPEG\tn01443537"))
    relabelled = load_dataset("tiny-imagenet", tmp_path, download=False)
    assert sorted(relabelled.test_y.tolist()) == [0, 0, 0, 1, 1, 2]
    # A damaged cache (cut short, or not ours at all) is decoded again, not an error.
    cache = data.tiny_imagenet_cache(tmp_path)
    for damage in (cache.read_bytes()[:-100], cache.read_bytes()[:50], b"not a cache"):
        cache.write_bytes(damage)
        again = load_dataset("tiny-imagenet", tmp_path, download=False)
        assert torch.equal(again.train_x, relabelled.train_x)
        assert torch.equal(again.test_x, relabelled.test_x)
        assert fingerprint(again) == fingerprint(relabelled)


def test_tiny_imagenet_without_a_writable_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, write: Any) -> None:
        raise OSError(28, "No space left on device")

    write_tiny_imagenet(tmp_path)
    monkeypatch.setattr(data, "atomic_write", full)
    s = load_dataset("tiny-imagenet", tmp_path, download=False)  # decoded, just not cached
    assert s.train_x.shape == (12, 3, 64, 64)
    assert not data.tiny_imagenet_cache(tmp_path).exists()


def test_tiny_imagenet_fingerprint(tmp_path: Path) -> None:
    root = write_tiny_imagenet(tmp_path / "a")
    s = load_dataset("tiny-imagenet", root, download=False)
    fp = fingerprint(s)
    assert fp["train"] == 12 and fp["test"] == 6 and len(fp["digest"]) == 16
    assert current_fingerprint("tiny-imagenet", root) == fp
    # The same files elsewhere (no cache there yet) have the same fingerprint; fewer do not.
    shutil.copytree(tiny_dir(root), tiny_dir(tmp_path / "b"))
    assert current_fingerprint("tiny-imagenet", tmp_path / "b") == fp
    fewer = write_tiny_imagenet(tmp_path / "c", per_class=3)
    assert current_fingerprint("tiny-imagenet", fewer)["digest"] != fp["digest"]
    assert current_fingerprint("tiny-imagenet", tmp_path / "none") is None
    # Remembered per process, but not past a file removed (its directory's mtime moves).
    images = tiny_dir(root) / "train" / "n04067472" / "images"
    (images / "n04067472_3.JPEG").unlink()
    os.utime(images, ns=(1, 1))  # distinct, whatever the file system's clock resolution
    assert current_fingerprint("tiny-imagenet", root)["train"] == 11


@pytest.mark.parametrize("download", [False, True])
def test_tiny_imagenet_missing(tmp_path: Path, download: bool) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("tiny-imagenet", tmp_path / "data", download=download)
    msg = one_line(e)
    expected = tmp_path / "data" / "tiny-imagenet-200" / "wnids.txt"
    assert msg == (
        f"tiny-imagenet not found: expected {expected}; download "
        f"http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into {tmp_path / 'data'}"
        " (prunetui cannot download it), or pass --data-dir DIR pointing at a data dir that "
        "holds tiny-imagenet-200/")
    assert not (tmp_path / "data").exists()  # nothing written, nothing downloaded
    assert "cs231n.stanford.edu" in find_files("tiny-imagenet", tmp_path / "data")


def _remove_val(folder: Path) -> None:
    shutil.rmtree(folder / "val")


def _drop_class(folder: Path) -> None:
    shutil.rmtree(folder / "train" / "n04067472")


def _empty_class(folder: Path) -> None:
    for p in (folder / "train" / "n04067472" / "images").iterdir():
        p.unlink()


def _lost_val_image(folder: Path) -> None:
    (folder / "val" / "images" / "val_4.JPEG").unlink()


def _unannotated_val_image(folder: Path) -> None:
    shutil.copy(folder / "val" / "images" / "val_0.JPEG", folder / "val" / "images" / "x.JPEG")


def _png_as_jpeg(folder: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save(folder / "val" / "images" / "val_3.JPEG", "PNG")


def _edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        target = folder / path
        text = target.read_text()
        assert old in text
        target.write_text(text.replace(old, new, 1))
    return edit


def _jpeg_size(name: str, size: int, folder: Path) -> None:
    """Make JPEG ``name`` declare a ``size``×``size`` image in its SOF0 header (data unchanged)."""
    path = folder / name
    blob = bytearray(path.read_bytes())
    sof = blob.index(b"\xff\xc0")
    blob[sof + 5:sof + 9] = struct.pack(">HH", size, size)
    path.write_bytes(bytes(blob))


_ANN = "val/val_annotations.txt"
_TINY_FAULTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "no val folder": (_remove_val, _ANN, "not found: expected"),
    "a class folder missing": (_drop_class, "train/n04067472/images",
                               "incomplete: {} is missing"),
    "a class with no images": (_empty_class, "train/n04067472/images", "holds no .JPEG images"),
    "an annotated image missing": (_lost_val_image, "val/images/val_4.JPEG",
                                   "incomplete: {} is missing (val_annotations.txt names it)"),
    "an image without annotation": (_unannotated_val_image, _ANN, "no line for x.JPEG"),
    "annotation without tabs": (_edit(_ANN, "val_2.JPEG\tn04067472\t0\t0\t63\t63",
                                      "val_2.JPEG n04067472 0 0 63 63"), _ANN,
                                "line 3 is not 'file<TAB>wnid<TAB>box'"),
    "annotation of an unknown class": (_edit(_ANN, "\tn04067472", "\tn00000000"), _ANN,
                                       "line 3 names class 'n00000000', which wnids.txt does"),
    "annotation twice": (_edit(_ANN, "val_1.JPEG", "val_0.JPEG"), _ANN,
                         "line 2 annotates val_0.JPEG again"),
    "annotation outside val/images": (_edit(_ANN, "val_1.JPEG", "../../wnids.txt"), _ANN,
                                      "line 2 does not name a file of val/images"),
    "annotations not text": (lambda f: (f / _ANN).write_bytes(b"\xff\xfe\x00"), _ANN,
                             "not text"),
    "wnid listed twice": (_edit("wnids.txt", "n01443537", "n09999999"), "wnids.txt",
                          "line 2: 'n09999999' is listed twice"),
    "not a wnid": (_edit("wnids.txt", "n01443537", "../n01443537"), "wnids.txt",
                   "line 2: '../n01443537' is not a wnid"),
    "more than 200 classes": (
        lambda f: (f / "wnids.txt").write_text("".join(f"n{i:08d}\n" for i in range(201))),
        "wnids.txt", "line 201: 'n00000200' is class 201, more than 200"),
    "no classes": (lambda f: (f / "wnids.txt").write_text("\n"), "wnids.txt",
                   "it lists no classes"),
    "a truncated JPEG": (
        lambda f: (f / "val/images/val_3.JPEG").write_bytes(
            (f / "val/images/val_3.JPEG").read_bytes()[:300]),
        "val/images/val_3.JPEG", "not a readable JPEG"),
    "a PNG named .JPEG": (_png_as_jpeg, "val/images/val_3.JPEG", "not a readable JPEG"),
    "a 32x32 image": (
        lambda f: write_jpeg(f / "train/n01443537/images/n01443537_1.JPEG",
                             np.zeros((3, 32, 32), np.uint8)),
        "train/n01443537/images/n01443537_1.JPEG", "a 32x32 image, not 64x64"),
    # PIL refuses over 179 million pixels and only warns (on stderr) from 89 million.
    **{f"a {n}x{n} JPEG header": (
        functools.partial(_jpeg_size, "train/n01443537/images/n01443537_1.JPEG", n),
        "train/n01443537/images/n01443537_1.JPEG", "declares a huge image, not 64x64")
       for n in (20000, 10000)},
    "a huge file named .JPEG": (
        lambda f: os.truncate(f / "val/images/val_5.JPEG", 4 << 20),  # sparse
        "val/images/val_5.JPEG", "more than a Tiny ImageNet image can hold"),
}


@pytest.mark.parametrize("case", list(_TINY_FAULTS))
def test_tiny_imagenet_faults_are_one_line(
    tmp_path: Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    fault, where, why = _TINY_FAULTS[case]
    write_tiny_imagenet(tmp_path)
    folder = tiny_dir(tmp_path)
    fault(folder)
    before = _snapshot(folder)
    msg = bounded_error(tmp_path, "tiny-imagenet")
    path = str(folder / where)
    assert path in msg and why.format(path) in msg
    assert "tiny-imagenet-200.zip" in msg and str(tmp_path) in msg  # the fix
    assert _snapshot(folder) == before and not data.tiny_imagenet_cache(tmp_path).exists()
    assert capfd.readouterr() == ("", "")  # not even a PIL warning


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_split() -> None:
    from sklearn.datasets import load_digits

    info = catalog.DATASETS["digits"]
    a = load_dataset("digits", None)
    b = load_dataset("digits", Path("/nonexistent"), download=False)  # bundled: no dir needed
    assert a.train_x.shape == (info.train_size, 1, 8, 8) == (1437, 1, 8, 8)
    assert a.test_x.shape == (info.test_size, 1, 8, 8) == (360, 1, 8, 8)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    for t in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, t), getattr(b, t))
    assert int(a.train_x.max()) == 255 and int(a.train_x.min()) == 0
    # Every sample once: the two parts' label counts add up to the whole set's.
    bunch = load_digits()
    total = np.bincount(bunch.target)
    test_counts = np.bincount(a.test_y.numpy(), minlength=10)
    assert (np.bincount(a.train_y.numpy(), minlength=10) + test_counts == total).all()
    # Stratified: each class's test share is its proportional share, rounded.
    assert (np.abs(test_counts - total * 360 / 1797) < 1).all()
    # Values 0..16 scaled by 255/16 and rounded.
    first_test = torch.from_numpy(np.rint(bunch.images * 255 / 16).astype(np.uint8))
    assert any(torch.equal(a.test_x[0, 0], img) for img in first_test)


# ---------------------------------------------------------------------------------------------
# DeviceLoader


def _tiny(n: int = 10, shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


MEAN, STD = catalog.DATASETS["cifar10"].mean, catalog.DATASETS["cifar10"].std


def test_loader_batches_and_normalization() -> None:
    x, y = _tiny(10)
    loader = DeviceLoader(x, y, 4, MEAN, STD, "cpu", shuffle=False, augment=False)
    assert len(loader) == 3 and loader.num_samples == 10
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    xb = torch.cat([b[0] for b in batches])
    assert xb.dtype == torch.float32 and batches[0][1].dtype == torch.int64
    ref = (x.double() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1).double()) / torch.tensor(
        STD
    ).view(1, 3, 1, 1).double()
    assert torch.allclose(xb.double(), ref, atol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    dropped = DeviceLoader(x, y, 4, MEAN, STD, "cpu", False, False, drop_last=True)
    assert len(dropped) == 2 and len(list(dropped)) == 2 and dropped.num_samples == 8
    assert torch.allclose(normalize(x, MEAN, STD).double(), ref, atol=1e-5)


def test_loader_rejects_bad_input() -> None:
    x, y = _tiny(4)
    with pytest.raises(ValueError):
        DeviceLoader(x.float(), y, 2, MEAN, STD, "cpu", False, False)
    with pytest.raises(ValueError):
        DeviceLoader(x, y, 0, MEAN, STD, "cpu", False, False)
    with pytest.raises(ValueError):
        DeviceLoader(x, y, 2, (0.5,), (0.5,), "cpu", False, False)


def _epoch(loader: DeviceLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_shuffle_is_deterministic_per_generator() -> None:
    x, y = _tiny(50)
    y = torch.arange(50)

    def run(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        loader = DeviceLoader(x, y, 8, MEAN, STD, "cpu", shuffle=True, augment=False, generator=g)
        return [_epoch(loader)[1] for _ in range(2)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # a new order every epoch
    assert sorted(a[0].tolist()) == list(range(50))  # each sample once
    assert not torch.equal(a[0], y)
    # Images stay with their labels.
    g = torch.Generator().manual_seed(1)
    loader = DeviceLoader(x, y, 8, MEAN, STD, "cpu", shuffle=True, augment=False, generator=g)
    xs, ys = _epoch(loader)
    assert torch.equal(xs, normalize(x, MEAN, STD)[ys])


def test_crop_flip_matches_torch_and_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    x, _ = _tiny(6)
    pad = data.CIFAR_PAD
    n = len(x)
    centred = torch.full((n,), pad)
    no, yes = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    assert torch.equal(crop_flip(x, centred, centred, no), x)
    assert torch.equal(crop_flip(x, centred, centred, yes), torch.flip(x, dims=[-1]))
    corner = crop_flip(x, torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), no)
    assert (corner[:, :, :pad, :] == 0).all() and (corner[:, :, :, :pad] == 0).all()
    assert torch.equal(corner[:, :, pad:, pad:], x[:, :, :-pad, :-pad])
    g = torch.Generator().manual_seed(5)
    top, left = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = crop_flip(x, top, left, flip)
    for i in range(n):
        ref = TF.crop(TF.pad(x[i], [pad]), int(top[i]), int(left[i]), 32, 32)
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        assert torch.equal(out[i], ref)


def test_augmentation_changes_images_not_shapes() -> None:
    x, y = _tiny(64)
    plain = _epoch(DeviceLoader(x, y, 16, MEAN, STD, "cpu", shuffle=False, augment=False))[0]

    def aug(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        loader = DeviceLoader(x, y, 16, MEAN, STD, "cpu", shuffle=False, augment=True,
                              generator=g)
        return _epoch(loader)[0]

    a = aug(0)
    assert a.shape == plain.shape and a.dtype == torch.float32
    changed = (a != plain).flatten(1).any(1)
    assert changed.sum() > 32  # 1 in 162 draws is the identity
    assert torch.equal(a, aug(0)) and not torch.equal(a, aug(1))
    # Padding is black in the raw image, i.e. -mean/std after normalization (torchvision's way).
    black = torch.tensor([-m / s for m, s in zip(MEAN, STD, strict=True)]).view(1, 3, 1)
    rows_all_black = (a - black.unsqueeze(-1)).abs().amax(dim=(1, 3)) < 1e-5  # N×H
    assert rows_all_black.any()


def test_channels_last() -> None:
    x, y = _tiny(8)
    loader = DeviceLoader(x, y, 4, MEAN, STD, "cpu", False, True, channels_last=True,
                          generator=torch.Generator().manual_seed(0))
    xb, _ = next(iter(loader))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def _splits(name: str, tmp_path: Path) -> Splits:
    if name.startswith("cifar"):
        write_cifar(tmp_path, name=name, train=200, test=30)
    else:
        write_mnist(tmp_path, name=name, train=55, test=30)
    return load_dataset(name, tmp_path, download=False)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_make_loaders(tmp_path: Path, name: str) -> None:
    s = _splits(name, tmp_path)
    train, test = make_loaders(s, 16, 25, "cpu", torch.Generator().manual_seed(0))
    assert train.shuffle and not test.shuffle and not test.augment
    assert train.augment == s.info.augment == (name == "cifar10")
    assert len(test) == 2 and len(train) == math_ceil(len(s.train_x), 16)
    xs, ys = _epoch(test)
    assert torch.equal(ys, s.test_y)
    assert torch.allclose(xs, normalize(s.test_x, s.info.mean, s.info.std))
    xb, yb = next(iter(train))
    assert xb.shape == (16, *s.info.shape) and yb.dtype == torch.int64


def math_ceil(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# prune_batch and the helper files


def test_prune_batch_is_class_balanced(tmp_path: Path) -> None:
    s = _splits("cifar10", tmp_path)  # 20 images per class
    x, y = prune_batch(s, 3, torch.Generator().manual_seed(0))
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.dtype == torch.int64 and torch.bincount(y, minlength=10).tolist() == [3] * 10
    x2, y2 = prune_batch(s, 3, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = prune_batch(s, 3, torch.Generator().manual_seed(1))
    assert not torch.equal(x, x3)
    # The images are real training images, normalized.
    norm = normalize(s.train_x, s.info.mean, s.info.std)
    assert all((norm == img).flatten(1).all(1).any() for img in x)
    x_all, y_all = prune_batch(s, 50, torch.Generator().manual_seed(0))  # more than a class has
    assert len(x_all) == 200 and torch.bincount(y_all).tolist() == [20] * 10


def test_prune_batch_with_a_short_class(tmp_path: Path) -> None:
    s = _splits("mnist", tmp_path)  # 55 images: classes 0-4 have 6, 5-9 have 5
    _, y = prune_batch(s, 6, torch.Generator().manual_seed(0))
    assert torch.bincount(y).tolist() == [6] * 5 + [5] * 5


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_helper_images_are_learnable(tmp_path: Path, name: str) -> None:
    # A nearest-class-mean classifier, fitted on the train split, beats chance on the test split.
    classes = catalog.DATASETS[name].num_classes
    if name.startswith("cifar"):
        write_cifar(tmp_path, name=name, train=classes * 5, test=classes * 2)
    else:
        write_mnist(tmp_path, name=name, train=100, test=50)
    s = load_dataset(name, tmp_path, download=False)
    tx, ty = s.train_x.flatten(1).float(), s.train_y
    means = torch.stack([tx[ty == c].mean(0) for c in range(classes)])
    pred = torch.cdist(s.test_x.flatten(1).float(), means).argmin(1)
    assert (pred == s.test_y).float().mean() > 0.9


def test_class_images_share_patterns_across_seeds() -> None:
    labels = np.array([3, 3])
    a = class_images(labels, (1, 28, 28), 10, seed=0).astype(float)
    b = class_images(labels, (1, 28, 28), 10, seed=9).astype(float)
    assert np.corrcoef(a[0].ravel(), b[1].ravel())[0, 1] > 0.8
