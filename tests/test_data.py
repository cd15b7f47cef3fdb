"""Data sources, samplers and batches on a generated fake dataset in both layouts (and TFDS)."""

import sys

import numpy as np
import pytest

from jaxretina import data


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return data.make_fake_dataset(tmp_path_factory.mktemp("dr"), per_class=(5, 2, 3, 2, 4), size=80)


def test_both_layouts_yield_the_same_batches(fake):
    manual = data.kaggle_manual_dir(fake / "manual", "train")
    folder = data.kaggle_folder(fake / "folder" / "images")
    assert manual.names == folder.names and manual.labels.tolist() == folder.labels.tolist()
    assert np.bincount(manual.labels).tolist() == [5, 2, 3, 2, 4]
    order = list(data.sequential(len(manual), 8))
    a = list(data.batches(manual, iter(order), size=48))
    b = list(data.batches(folder, iter(order), size=48))
    assert len(a) == 2 and a[1]["valid"].tolist() == [True] * 8
    for x, y in zip(a, b):
        assert x["image"].shape == (8, 48, 48, 3) and x["image"].dtype == np.uint8
        assert x["name"] == y["name"] and x["label"].tolist() == y["label"].tolist()
        # the manual layout is JPEG (Kaggle's files), the folder PNG: equal up to JPEG loss
        assert np.abs(x["image"].astype(int) - y["image"].astype(int)).mean() < 3.0
    val, test = data.kaggle_manual_dir(fake / "manual", "validation"), data.kaggle_manual_dir(fake / "manual", "test")
    assert len(val) == len(test) == 5 and not set(val.names) & set(test.names)


def test_tfds_source_through_tensorflow_datasets(fake, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        src = data.tfds_source(tmp_path, "train")
        assert len(src) == 6 and src.labels.shape == (6,) and set(src.labels.tolist()) <= set(range(5))
        batch = next(data.batches(src, data.sequential(len(src), 4), size=40))
        assert batch["image"].shape == (4, 40, 40, 3) and batch["image"].dtype == np.uint8
        assert batch["label"].tolist() == src.labels[:4].tolist() and all(isinstance(n, str) for n in batch["name"])
    with pytest.raises(FileNotFoundError, match=r"manual download directory .* lacks \['train', 'trainLabels.csv'\]"):
        data.tfds_source(tmp_path / "empty_data", "train", manual_dir=tmp_path / "nothing")


def test_tfds_missing_package_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"tensorflow-datasets .*kaggle_manual_dir"):
        data.tfds_source(tmp_path)


def test_class_balanced_fractions_over_many_batches():
    labels = np.repeat(np.arange(5), [400, 30, 80, 20, 15])
    counts = data.class_counts(data.SEED001_FRACTIONS, 32)
    assert counts.tolist() == [16, 2, 4, 2, 8]
    drawn = np.zeros(labels.size, int)
    order = data.class_balanced(labels, data.SEED001_FRACTIONS, 32, seed=3)
    for _ in range(300):
        idx = next(order)
        assert np.bincount(labels[idx], minlength=5).tolist() == counts.tolist()
        np.add.at(drawn, idx, 1)
    # within a class, every member equally likely: grade 4 (15 members, 2400 draws) within 5 sigma
    g4 = drawn[labels == 4]
    expect = 300 * 8 / 15
    assert np.all(np.abs(g4 - expect) < 5 * np.sqrt(expect))
    # a batch size whose products are not integers: largest remainder, still summing to the size
    assert data.class_counts(data.SEED001_FRACTIONS, 10).sum() == 10
    # resuming at batch 7 gives batch 7
    fresh = data.class_balanced(labels, data.SEED001_FRACTIONS, 32, seed=3)
    seventh = [next(fresh) for _ in range(8)][7]
    assert next(data.class_balanced(labels, data.SEED001_FRACTIONS, 32, seed=3, start=7)).tolist() == seventh.tolist()


def test_weighted_oversampling_shares():
    labels = np.repeat(np.arange(5), [2581, 244, 529, 87, 71])          # seed 002's d / 10
    w = np.asarray(data.SEED002_WEIGHTS)
    share = w * np.bincount(labels) / (w * np.bincount(labels)).sum()
    order = data.weighted(labels, w, 64, seed=1)
    seen = np.bincount(np.concatenate([labels[next(order)] for _ in range(400)]), minlength=5) / (400 * 64)
    n = 400 * 64
    assert np.all(np.abs(seen - share) < 5 * np.sqrt(share * (1 - share) / n))


def test_sequential_covers_once_with_padding():
    got = list(data.sequential(11, 4))
    idx = np.concatenate([i[v] for i, v in got])
    assert idx.tolist() == list(range(11)) and all(i.shape == (4,) for i, _ in got)
    assert got[-1][1].tolist() == [True, True, True, False]


def test_square_resize_centres():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 200
    out = data.square_resize(img, 40)
    assert out.shape == (40, 40, 3) and out[:10].max() == 0 and out[30:].max() == 0
    assert out[20, 5, 0] == 200 and out[20, 35, 0] == 0


def test_errors(fake, tmp_path):
    (tmp_path / "bad.csv").write_text("file,grade\na,1\n")
    with pytest.raises(ValueError, match="expected columns 'image' and 'level'"):
        data.KaggleFolder(fake / "folder" / "images", tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("image,level\nnope_left,1\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 1 images .*first: \['nope_left'\]"):
        data.KaggleFolder(fake / "folder" / "images", tmp_path / "missing.csv")
    (tmp_path / "range.csv").write_text("image,level\n0_right,7\n")
    with pytest.raises(ValueError, match="level must be 0-4; found 7"):
        data.KaggleFolder(fake / "folder" / "images", tmp_path / "range.csv")
    with pytest.raises(FileNotFoundError, match="lacks"):
        data.kaggle_manual_dir(tmp_path, "train")
    with pytest.raises(ValueError, match="sum to 1"):
        data.class_counts((0.5, 0.6), 8)
    with pytest.raises(ValueError, match=r"classes \[3\] have a non-zero fraction but no examples"):
        next(data.class_balanced(np.array([0, 1, 2, 4]), data.SEED001_FRACTIONS, 16))
    (tmp_path / "junk.jpeg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        data.decode_rgb(tmp_path / "junk.jpeg")


def test_stratified_split(fake):
    src = data.kaggle_manual_dir(fake / "manual", "train")
    a, b = data.split(src, 0.8, seed=0)
    assert len(a) + len(b) == len(src) and not set(a.indices) & set(b.indices)
    assert np.bincount(a.labels, minlength=5).tolist() == [4, 2, 2, 2, 3]   # round(0.8 n) per grade
    assert a[0].name == src[int(a.indices[0])].name and a.labels[0] == src.labels[a.indices[0]]
