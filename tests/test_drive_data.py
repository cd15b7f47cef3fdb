"""DRIVE in its folder layout and through the TFDS builder ``drive``, on a generated fake tree."""

import numpy as np
import pytest
from PIL import Image

from jaxretina import data


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return data.make_fake_drive(tmp_path_factory.mktemp("drive") / "DRIVE", n_train=3, n_test=2, height=40, width=36)


def test_folder_reads_the_standard_layout(tree):
    train = data.drive_folder(tree, "training")
    assert len(train) == 3 and train.names == ["21_training", "22_training", "23_training"]
    ex = train[1]
    assert ex.name == "22_training" and ex.image.shape == (40, 36, 3) and ex.image.dtype == np.uint8
    assert ex.vessels.dtype == bool and ex.mask.shape == (40, 36)
    # exactly the files on disk: labels are the GIF > 127, the image the TIFF's pixels
    with Image.open(tree / "training/images/22_training.tif") as im:
        np.testing.assert_array_equal(ex.image, np.asarray(im))
    with Image.open(tree / "training/1st_manual/22_manual1.gif") as im:
        gif = np.asarray(im.convert("L"))
    np.testing.assert_array_equal(ex.vessels, gif > 127)
    assert ex.vessels.any() and not ex.vessels[~ex.mask].any()
    test = data.drive_folder(tree.parent, "test")           # the folder holding DRIVE/ works too
    images, vessels, masks = test.arrays()
    assert images.shape == (2, 40, 36, 3) and vessels.shape == masks.shape == (2, 40, 36)
    second = data.drive_folder(tree, "test", annotator=2)[0]
    assert second.vessels.sum() > test[0].vessels.sum()      # the fake 2nd annotator draws wider vessels


def test_missing_pieces_get_clear_errors(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a DRIVE directory"):
        data.drive_folder(tmp_path, "training")
    with pytest.raises(ValueError, match="split must be one of"):
        data.drive_folder(tree, "validation")
    with pytest.raises(ValueError, match="annotator must be 1"):
        data.drive_folder(tree, "test", annotator=3)
    broken = data.make_fake_drive(tmp_path / "b", n_train=1, n_test=1, height=20, width=20)
    (broken / "training/mask/21_training_mask.gif").unlink()
    with pytest.raises(FileNotFoundError, match="no field-of-view mask"):
        data.drive_folder(broken, "training")
    (broken / "test/1st_manual/01_manual1.gif").unlink()
    unlabeled = data.drive_folder(broken, "test")
    assert not unlabeled.has_labels and unlabeled[0].vessels is None
    with pytest.raises(ValueError, match="no vessel labels"):
        unlabeled.arrays()
    (broken / "test/images/01_test.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="cannot decode"):
        unlabeled[0]


def test_tfds_builder_gives_the_folder_examples(tree, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="not prepared"):
        data.drive_tfds(tmp_path / "tfds", "test")
    src = data.drive_tfds(tmp_path / "tfds", "test", manual_dir=tree)
    folder = data.drive_folder(tree, "test")
    assert len(src) == len(folder) == 2
    for k in range(2):
        a, b = src[k], folder[k]
        assert a.name == b.name
        for field in ("image", "vessels", "mask"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert len(data.drive_tfds(tmp_path / "tfds", "train")) == 3   # prepared once: no manual_dir needed now
    with pytest.raises(ValueError, match="split must be one of"):
        data.drive_tfds(tmp_path / "tfds", "training")
