"""Diabetic-retinopathy data: sources (Kaggle folder + CSV, Kaggle/TFDS manual directory, TFDS),
samplers (seed 001's class-balanced batches, seed 002's weighted oversampling), fixed-shape
batches, and a generated fake dataset for tests and demos; NIfTI volumes and a synthetic
vessel phantom for the 3D U-Net (seed 003); DRIVE vessel data in its folder layout and as the TFDS
builder ``drive``, with a generated fake tree (seeds 000 and 004).

Example::

    >>> from jaxretina import data
    >>> src = data.kaggle_manual_dir("~/eyepacs", split="train")       # Kaggle's extracted download
    >>> order = data.class_balanced(src.labels, data.SEED001_FRACTIONS, batch_size=8, seed=0)
    >>> for batch in data.batches(src, order, size=64, steps=2):
    ...     print(batch["image"].shape, batch["label"].shape)
    (8, 64, 64, 3) (8,)
    (8, 64, 64, 3) (8,)
"""

from jaxretina.data.batching import batches, load_batch, prefetched
from jaxretina.data.drive import (
    DRIVE_SHAPE, DriveExample, DriveFolder, drive_batches, drive_folder, drive_tfds, make_fake_drive, stack_examples,
)
from jaxretina.data.fake import fake_fundus, make_fake_dataset
from jaxretina.data.nifti import NiftiVolume, read_nifti, write_nifti
from jaxretina.data.phantom import Phantom, vessel_phantom
from jaxretina.data.sampling import (
    SEED001_FRACTIONS, SEED002_WEIGHTS, class_balanced, class_counts, sequential, shuffled, weighted,
)
from jaxretina.data.sources import (
    GRADES, TFDS_NAME, Example, KaggleFolder, Subset, TFDSSource, decode_rgb, kaggle_folder, kaggle_manual_dir,
    split, square_resize, tfds_source,
)

__all__ = [
    "GRADES", "SEED001_FRACTIONS", "SEED002_WEIGHTS", "TFDS_NAME", "Example", "KaggleFolder", "TFDSSource",
    "batches", "class_balanced", "class_counts", "decode_rgb", "fake_fundus", "kaggle_folder", "kaggle_manual_dir",
    "load_batch", "make_fake_dataset", "sequential", "split", "square_resize", "Subset", "tfds_source",
    "weighted", "NiftiVolume", "read_nifti", "write_nifti", "Phantom", "vessel_phantom", "DRIVE_SHAPE",
    "DriveExample", "DriveFolder", "drive_batches", "drive_folder", "drive_tfds", "make_fake_drive", "prefetched",
    "shuffled", "stack_examples",
]
