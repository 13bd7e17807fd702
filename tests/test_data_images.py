"""Image data set loaders on tiny files made in each real layout: idx (MNIST), CIFAR pickles/folder/zip, CelebA,
LSUN (folder and LMDB) and imagefolder; the decoded cache; the errors for missing or corrupt data."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gflowzoo.data import images as images_mod
from gflowzoo.data import open_dataset
from gflowzoo.data.folders import celeba64, imagefolder, lsun_church64
from gflowzoo.data.standard import cifar10, fashion_mnist, mnist, read_idx
from gflowzoo.errors import DataError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_download_no_env_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GFLOWZOO_DOWNLOAD", raising=False)
    monkeypatch.delenv("GFLOWZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # never write into the real home


def all_of(ds) -> torch.Tensor:
    return ds.get(torch.arange(len(ds)))


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().to(torch.uint8).numpy()


# -- idx -------------------------------------------------------------------------------------------------------
def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    blob = head + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)


def make_idx_set(root: Path, folder: str = "MNIST", gz: bool = False, n: dict | None = None) -> dict:
    n = n or {"train": 5, "t10k": 3}
    made = {}
    for prefix, count in n.items():
        imgs = RNG.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labs = RNG.integers(0, 10, count, dtype=np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", imgs, gz)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labs, gz)
        made[prefix] = (imgs, labs)
    return made


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_layout(tmp_path, gz):
    made = make_idx_set(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = open_dataset("mnist", split, tmp_path)
        imgs, labs = made[prefix]
        assert ds.shape == (1, 28, 28) and len(ds) == len(imgs)
        x = all_of(ds)
        assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
        assert np.allclose(x.numpy(), imgs[:, None] / 127.5 - 1, atol=1e-6)
        assert np.array_equal(ds.labels, labs)
    assert isinstance(mnist(tmp_path, "train").array, np.memmap) == (not gz)  # plain idx files are memory-mapped


def test_fashion_mnist_own_folder(tmp_path):
    make_idx_set(tmp_path, folder="FashionMNIST", gz=True)
    ds = open_dataset("fashion-mnist", "test", tmp_path)
    assert len(ds) == 3 and ds.shape == (1, 28, 28)
    with pytest.raises(DataError, match="FashionMNIST"):
        fashion_mnist(tmp_path / "nothing", "train")


def test_idx_missing_root_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        open_dataset("mnist", "train", tmp_path / "absent")
    msg = str(err.value)
    assert str(tmp_path / "absent" / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg
    assert "GFLOWZOO_DOWNLOAD=1" in msg and "--data-root" in msg and "torchvision.datasets.MNIST" in msg


def test_idx_truncated_and_bad_magic(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated"):
        mnist(tmp_path, "train")
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is not an idx file"):
        mnist(tmp_path, "test")
    gz = tmp_path / "gz"
    make_idx_set(gz, gz=True)
    gzfile = gz / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    gzfile.write_bytes(gzfile.read_bytes()[:40])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        mnist(gz, "train")
    with pytest.raises(DataError, match="items of shape"):
        write_idx(tmp_path / "odd", np.zeros((2, 27, 28), np.uint8))
        read_idx(tmp_path / "odd", 0x803, (28, 28))


def test_download_only_when_asked(tmp_path, monkeypatch):
    # a stand-in torchvision (importing the real one takes seconds; nothing may reach the network anyway)
    tvd = types.ModuleType("torchvision.datasets")
    tv = types.ModuleType("torchvision")
    tv.datasets = tvd
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tvd)
    calls = []

    class FakeMNIST:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            make_idx_set(Path(root))

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST, raising=False)
    with pytest.raises(DataError, match="GFLOWZOO_DOWNLOAD"):
        mnist(tmp_path, "train")
    assert calls == []
    monkeypatch.setenv("GFLOWZOO_DOWNLOAD", "1")
    assert len(mnist(tmp_path, "train")) == 5
    assert calls and all(c[2] for c in calls)

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", Offline, raising=False)
    with pytest.raises(DataError, match="Downloading cifar10 .*network is unreachable"):
        cifar10(tmp_path / "empty", "train")


# -- CIFAR-10 --------------------------------------------------------------------------------------------------
def cifar_batch(n: int) -> tuple[np.ndarray, list[int]]:
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in RNG.integers(0, 10, n)]


def test_cifar_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train = []
    for i in range(1, 6):
        data, labels = cifar_batch(2)
        blob = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels}, protocol=2)
        if i == 3:  # as numpy 1.x wrote it (the released files)
            blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / f"data_batch_{i}").write_bytes(blob)
        train.append((data, labels))
    data, labels = cifar_batch(3)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=4))
    ds = open_dataset("cifar10", "train", tmp_path)
    assert len(ds) == 10 and ds.shape == (3, 32, 32)
    expected = np.concatenate([d for d, _ in train]).reshape(10, 3, 32, 32)
    assert np.array_equal(as_uint8(all_of(ds)), expected)
    # channel-major rows: the first 1024 bytes of a row are the red plane
    assert np.array_equal(expected[0, 0].ravel(), train[0][0][0, :1024])
    assert ds.labels.tolist() == sum((lab for _, lab in train), [])
    test = cifar10(tmp_path, "test")
    assert len(test) == 3 and test.labels.tolist() == labels


def test_cifar_pickle_refuses_other_objects(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="test_batch"):
        cifar10(tmp_path, "test")
    assert not marker.exists()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"uint8 array \[n, 3072\]"):
        cifar10(tmp_path, "test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:30])
    with pytest.raises(DataError, match="corrupt"):
        cifar10(tmp_path, "test")
    with pytest.raises(DataError, match="missing .*data_batch_1"):
        cifar10(tmp_path, "train")


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {"quality": 95}))
    return buf.getvalue()


def make_cifar_zip(path: Path, per_class: int = 2) -> dict:
    made = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.md", "x")
        for split in ("train", "test"):
            for cls in ("cat", "airplane"):
                for i in range(per_class):
                    arr = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    zf.writestr(f"{split}/{cls}/{i:04d}.png", png_bytes(arr))
                    made[(split, cls, i)] = arr
        zf.writestr("test/cat/9999.jpg", png_bytes(np.full((32, 32, 3), 200, np.uint8), "JPEG"))
    return made


def test_cifar_zip_decoded_and_cached(tmp_path, monkeypatch):
    made = make_cifar_zip(tmp_path / "cifar10-jpg" / "cifar10_jpg.zip")
    ds = cifar10(tmp_path, "train")
    assert len(ds) == 4 and ds.shape == (3, 32, 32)
    x = as_uint8(all_of(ds))
    # sorted by class then file; labels = index of the class in sorted order (airplane 0, cat 1)
    order = [("train", "airplane", 0), ("train", "airplane", 1), ("train", "cat", 0), ("train", "cat", 1)]
    for i, key in enumerate(order):
        assert np.array_equal(x[i], made[key].transpose(2, 0, 1))
    assert ds.labels.tolist() == [0, 0, 1, 1]
    test = cifar10(tmp_path, "test")
    assert len(test) == 5 and test.labels.tolist() == [0, 0, 1, 1, 1]
    assert np.abs(as_uint8(all_of(test))[-1].astype(int) - 200).max() <= 3  # the JPEG member
    cached = sorted(p.name for p in (tmp_path / ".gflowzoo-cache").glob("cifar10-*.npy"))
    assert len(cached) == 4 and sum(n.endswith(".labels.npy") for n in cached) == 2  # images + labels per split
    assert {n.split("-")[1] for n in cached} == {"train", "test"}
    # a second open reads the cache: it neither decodes nor lists the zip again
    import gflowzoo.data.standard as standard

    monkeypatch.setattr(images_mod, "prepare", lambda *a: pytest.fail("decoded again"))
    monkeypatch.setattr(standard.zipfile, "ZipFile", lambda *a: pytest.fail("zip listed again"))
    again = cifar10(tmp_path, "train")
    assert isinstance(again.array, np.memmap)
    assert np.array_equal(as_uint8(all_of(again)), x)
    assert again.labels.tolist() == [0, 0, 1, 1]


def test_cifar_image_folder_before_zip(tmp_path):
    make_cifar_zip(tmp_path / "cifar10-jpg" / "cifar10_jpg.zip")
    for cls, value in (("dog", 10), ("bird", 250)):
        (tmp_path / "cifar10" / "train" / cls).mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(tmp_path / "cifar10" / "train" / cls / "a.png")
    ds = cifar10(tmp_path, "train")
    assert len(ds) == 2 and ds.labels.tolist() == [0, 1]
    assert as_uint8(all_of(ds))[:, 0, 0, 0].tolist() == [250, 10]


def test_cifar_missing_lists_every_place(tmp_path):
    with pytest.raises(DataError) as err:
        open_dataset("cifar10", "test", tmp_path)
    msg = str(err.value)
    for part in ("cifar-10-batches-py", str(tmp_path / "cifar10" / "test"), "cifar10_jpg.zip", "GFLOWZOO_DOWNLOAD",
                 "--data-root", "CIFAR10("):
        assert part in msg
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        cifar10(tmp_path, "valid")


# -- CelebA ----------------------------------------------------------------------------------------------------
def celeba_image(index: int) -> np.ndarray:
    """178x218: red outside the centred 140 square, a 6-pixel green ring inside its edge, blue inside."""
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[..., 0] = 255
    top, left = 39, 19
    arr[top : top + 140, left : left + 140] = (0, 255, 0)
    arr[top + 6 : top + 134, left + 6 : left + 134] = (0, 0, 255 - index)
    return arr


def make_celeba(root: Path, n: int, partition: list[int] | None) -> None:
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(celeba_image(i)).save(folder / f"{i + 1:06d}.jpg", quality=100, subsampling=0)
    if partition is not None:
        lines = [f"{i + 1:06d}.jpg {p}" for i, p in enumerate(partition)]
        (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def test_celeba_partition_and_crop(tmp_path):
    make_celeba(tmp_path, 6, [0, 0, 0, 1, 2, 2])
    sizes = {s: len(open_dataset("celeba64", s, tmp_path)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 3, "valid": 1, "test": 2}
    x = as_uint8(all_of(celeba64(tmp_path, "test"))).astype(int)
    assert x.shape == (2, 3, 64, 64)
    assert x[:, 0].max() < 30  # no red: nothing outside the 140 square was kept
    assert (x[:, 1, 0, :] > 120).all() and (x[:, 1, :, 0] > 120).all()  # the ring at the edge was kept
    assert (np.abs(x[:, 2, 20:44, 20:44] - np.array([251, 250])[:, None, None]) <= 4).all()  # files 5 and 6


def test_celeba_without_partition_falls_back(tmp_path, capsys):
    make_celeba(tmp_path, 10, None)
    assert [len(celeba64(tmp_path, s)) for s in ("train", "valid", "test")] == [8, 1, 1]
    assert "deterministic 80/10/10" in capsys.readouterr().err
    blue = as_uint8(all_of(celeba64(tmp_path, "test")))[0, 2, 32, 32]
    assert abs(int(blue) - (255 - 9)) <= 4  # the last file by name


def test_celeba_missing(tmp_path):
    with pytest.raises(DataError) as err:
        celeba64(tmp_path, "train")
    assert "img_align_celeba" in str(err.value) and "list_eval_partition.txt" in str(err.value)
    make_celeba(tmp_path, 3, [0, 0, 2])
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n000009.jpg 0\n")
    with pytest.raises(DataError, match="missing .*000009.jpg"):
        celeba64(tmp_path, "train")


# -- LSUN ------------------------------------------------------------------------------------------------------
def wide_image(value: int) -> np.ndarray:
    """96 wide, 64 high: red 16-pixel bands left and right, blue ``value`` in the centred square."""
    arr = np.zeros((64, 96, 3), np.uint8)
    arr[:, :16, 0] = arr[:, 80:, 0] = 255
    arr[:, 16:80, 2] = value
    return arr


def test_lsun_folder_any_nesting(tmp_path):
    train = tmp_path / "lsun" / "church_outdoor_train"
    (train / "a" / "b").mkdir(parents=True)
    Image.fromarray(wide_image(100)).save(train / "a" / "b" / "x.png")
    Image.fromarray(wide_image(200)).save(train / "y.webp", lossless=True)
    Image.fromarray(np.full((300, 200, 3), 7, np.uint8)).save(train / "a" / "z.png")
    val = tmp_path / "lsun" / "church_outdoor_val"
    val.mkdir()
    Image.fromarray(wide_image(50)).save(val / "v.png")
    ds = open_dataset("lsun-church64", "train", tmp_path)
    assert len(ds) == 3 and ds.shape == (3, 64, 64)
    x = as_uint8(all_of(ds))
    # sorted by relative path: a/b/x.png, a/z.png, y.webp
    assert x[[0, 2], 0].max() == 0  # the red side bands were cropped away
    assert (x[0, 2] == 100).all() and (x[1] == 7).all() and (x[2, 2] == 200).all()
    test = lsun_church64(tmp_path, "test")
    assert len(test) == 1 and (as_uint8(all_of(test))[0, 2] == 50).all()


def test_lsun_lmdb_needs_package(tmp_path, monkeypatch):
    (tmp_path / "lsun" / "church_outdoor_val_lmdb").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(DataError, match="pip install lmdb"):
        lsun_church64(tmp_path, "val")


def test_lsun_lmdb(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    db = tmp_path / "lsun" / "church_outdoor_val_lmdb"
    db.mkdir(parents=True)
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in ((b"b2", 20), (b"a1", 10), (b"c3", 30)):
            txn.put(key, png_bytes(wide_image(value), "WEBP") if key == b"c3" else png_bytes(wide_image(value)))
    env.close()
    ds = lsun_church64(tmp_path, "test")
    assert len(ds) == 3 and ds.shape == (3, 64, 64)
    x = as_uint8(all_of(ds))
    assert x[:, 0].max() == 0  # the red side bands were cropped away
    assert [np.unique(img[2]).tolist() for img in x] == [[10], [20], [30]]  # keys in sorted order


def test_lsun_missing(tmp_path):
    with pytest.raises(DataError) as err:
        lsun_church64(tmp_path, "train")
    assert "church_outdoor_train" in str(err.value) and "church_outdoor_train_lmdb" in str(err.value)


# -- imagefolder -----------------------------------------------------------------------------------------------
def test_imagefolder_grey_square_keeps_size_and_splits(tmp_path):
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    values = {}
    for i in range(40):
        rel = f"sub/{i:02d}.png" if i % 3 else f"{i:02d}.bmp"
        values[rel] = i * 5
        Image.fromarray(np.full((16, 16), i * 5, np.uint8), mode="L").save(folder / rel)
    (folder / ".hidden.png").write_bytes(b"not an image")  # skipped
    train = open_dataset(f"imagefolder:{folder}", "train", tmp_path / "root")
    test = open_dataset(f"imagefolder:{folder}", "test", tmp_path / "root")
    assert train.shape == test.shape == (1, 16, 16)
    assert (len(train), len(test)) == (38, 2)
    got_test = sorted(as_uint8(all_of(test))[:, 0, 0, 0].tolist())
    got_train = sorted(as_uint8(all_of(train))[:, 0, 0, 0].tolist())
    ranked = sorted(values, key=lambda r: hashlib.sha1(r.encode()).hexdigest())
    assert got_test == sorted(values[r] for r in ranked[:2])
    assert sorted(got_test + got_train) == sorted(values.values())
    assert train.name == f"imagefolder:{folder}"


def test_imagefolder_mixed_sizes_rgb_and_size_suffix(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.full((20, 20), 90, np.uint8), mode="L").save(folder / "g.png")
    Image.fromarray(np.full((30, 40, 3), (255, 0, 0), np.uint8)).save(folder / "r.jpg", quality=100)
    Image.fromarray(np.full((10, 10, 4), 60, np.uint8), mode="RGBA").save(folder / "t.png")
    auto = imagefolder(tmp_path, "train", arg=str(folder))
    assert auto.shape == (3, 64, 64)  # mixed sizes -> default 64; one RGB image -> colour
    sized = imagefolder(tmp_path, "train", arg=f"{folder}@24")
    assert sized.shape == (3, 24, 24) and len(sized) + len(imagefolder(tmp_path, "test", arg=f"{folder}@24")) == 3
    x = all_of(sized)
    assert x.min() >= -1 and x.max() <= 1
    grey_rows = [img for img in as_uint8(x) if abs(int(img[0, 5, 5]) - 90) <= 1]
    for img in grey_rows:  # the grey image became RGB with equal channels
        assert img[0, 5, 5] == img[1, 5, 5] == img[2, 5, 5]


def test_imagefolder_says_what_it_decided_once(tmp_path, capsys):
    """Loading a mixed folder says the chosen size and channels and why, and what was skipped: once per process
    (both splits), and again from beside the cache when a later process loads it from there."""
    from gflowzoo.data import folders

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((28, 28), i, np.uint8), mode="L").save(folder / f"g{i}.png")
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), i, np.uint8)).save(folder / f"c{i}.png")
    Image.fromarray(np.full((20, 30, 4), 9, np.uint8), mode="RGBA").save(folder / "wide.png")
    (folder / "a.txt").write_text("x")
    (folder / "b.doc").write_text("x")
    (folder / ".hidden.txt").write_text("x")  # hidden: not counted
    expected = (
        f"gflowzoo: imagefolder {folder.resolve()}: 8 images, sizes 28x28 (5), 64x64 (2), 30x20 (1) -> resized to "
        "64x64 (mixed sizes: the default); non-square images cut to their largest centred square; "
        "modes L (5), RGB (2), RGBA (1) -> 3 channels (not every image is grey); alpha dropped; "
        "2 files skipped (not images: a.txt, b.doc)"
    )
    train = imagefolder(tmp_path, "train", arg=str(folder))
    test = imagefolder(tmp_path, "test", arg=str(folder))
    assert train.shape == test.shape == (3, 64, 64)
    assert capsys.readouterr().err.splitlines() == [expected]  # one line for both splits

    folders._TOLD.clear()  # a new process: served from the cache, the same line
    imagefolder(tmp_path, "train", arg=str(folder))
    assert capsys.readouterr().err.splitlines() == [expected]
    assert len(list((tmp_path / ".gflowzoo-cache").glob("imagefolder-*.about.txt"))) == 2

    sized = imagefolder(tmp_path, "train", arg=f"{folder}@28")
    assert sized.shape == (3, 28, 28)
    assert "-> resized to 28x28 (@28)" in capsys.readouterr().err

    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16), i, np.uint8), mode="L").save(grey / f"{i}.png")
    assert imagefolder(tmp_path, "train", arg=str(grey)).shape == (1, 16, 16)
    assert capsys.readouterr().err.splitlines() == [
        f"gflowzoo: imagefolder {grey.resolve()}: 3 images, sizes 16x16 (3) -> kept at 16x16 (one square size); "
        "modes L (3) -> 1 channel (all grey)"
    ]


def test_imagefolder_relative_to_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root" / "pics").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / "root" / "pics" / f"{i}.png")
    assert len(open_dataset("imagefolder:pics@8", "train", tmp_path / "root")) == 2


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="Looked in"):
        open_dataset(f"imagefolder:{tmp_path / 'nope'}", "train", tmp_path)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        open_dataset(f"imagefolder:{tmp_path / 'empty'}", "train", tmp_path)
    with pytest.raises(DataError, match="needs a value"):
        open_dataset("imagefolder:", "train", tmp_path)
    with pytest.raises(DataError, match="2..4096"):
        open_dataset(f"imagefolder:{tmp_path}@1", "train", tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(bad / f"{i}.png")
    (bad / "1.png").write_bytes((bad / "1.png").read_bytes()[:20])  # not even a full header
    with pytest.raises(DataError, match="1.png"):
        imagefolder(tmp_path, "train", arg=f"{bad}")


def test_corrupt_image_data_names_the_file(tmp_path):
    folder = tmp_path / "cifar10" / "test" / "cat"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    blob = (folder / "1.png").read_bytes()
    (folder / "1.png").write_bytes(blob[: len(blob) // 2])  # valid header, pixel data cut off
    with pytest.raises(DataError, match=r"Cannot decode image .*cat/1\.png"):
        cifar10(tmp_path, "test")
    assert not list((tmp_path / ".gflowzoo-cache").glob("*.npy"))  # nothing half-written was kept


def test_sixteen_bit_grey_keeps_top_bits(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    for i, value in enumerate((200 * 256 + 77, 30 * 256 + 255)):
        Image.fromarray(np.full((8, 8), value, np.uint16)).save(folder / f"{i}.png")
    ds = [imagefolder(tmp_path, s, arg=str(folder)) for s in ("train", "test")]
    assert ds[0].shape == (1, 8, 8)
    assert sorted(int(as_uint8(all_of(d)).max()) for d in ds) == [30, 200]


# -- cache -----------------------------------------------------------------------------------------------------
def test_cache_in_user_folder_when_root_read_only(tmp_path, monkeypatch):
    folder = tmp_path / "ro" / "cifar10" / "test" / "cat"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(folder / f"{i}.png")
    os.chmod(tmp_path / "ro", 0o555)
    try:
        assert len(cifar10(tmp_path / "ro", "test")) == 2
        assert not (tmp_path / "ro" / ".gflowzoo-cache").exists()
        assert len(list((tmp_path / "xdg" / "gflowzoo" / "decoded").glob("cifar10-test-*.npy"))) == 1
        monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "mine"))
        assert len(cifar10(tmp_path / "ro", "test")) == 2
        assert len(list((tmp_path / "mine").glob("cifar10-test-*.npy"))) == 1
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_cache_invalidated_when_files_change(tmp_path):
    folder = tmp_path / "cifar10" / "train" / "cat"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 5, np.uint8)).save(folder / "a.png")
    assert as_uint8(all_of(cifar10(tmp_path, "train")))[0, 0, 0, 0] == 5
    Image.fromarray(np.full((32, 32, 3), 77, np.uint8)).save(folder / "a.png")
    os.utime(folder / "a.png", ns=(1, 1))  # a different mtime even on coarse clocks
    assert as_uint8(all_of(cifar10(tmp_path, "train")))[0, 0, 0, 0] == 77
    assert len(list((tmp_path / ".gflowzoo-cache").glob("*.npy"))) == 2
    assert not list((tmp_path / ".gflowzoo-cache").glob(".*tmp"))  # no temporary files left behind


def test_progress_bar_only_for_larger_sets(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(folder / f"{i}.png")
    imagefolder(tmp_path, "train", arg=str(folder))
    assert "Decoding" not in capsys.readouterr().err
    monkeypatch.setattr(images_mod, "PROGRESS_MIN", 2)
    imagefolder(tmp_path, "train", arg=f"{folder}@4")
    assert "Decoding imagefolder (train)" in capsys.readouterr().err
