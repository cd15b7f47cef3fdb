"""The TFDS builder ``drive``: DRIVE from its manual download, prepared as array_record files.

Importing this module registers the builder with TFDS (``tfds.builder("drive")``).  Preparing
and reading need no TensorFlow: the features are zlib-compressed uint8 tensors, not TFDS's
``Image`` feature (which encodes PNGs through TensorFlow).  :func:`jaxretina.data.drive_tfds`
is the usual entry point.

Example (the first call prepares the dataset and says so; this one reads it)::

    >>> src = data.drive_tfds("~/tensorflow_datasets", "test", manual_dir="~/Downloads/DRIVE")
    >>> ex = src[0]                                # DriveExample, as from data.drive_folder
    >>> ex.image.dtype, ex.image.shape[-1], ex.vessels.dtype
    (dtype('uint8'), 3, dtype('bool'))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from jaxretina.data.drive import DriveExample, DriveFolder
from jaxretina.data.sources import record_index

__all__ = ["Drive", "DriveTFDS", "drive_tfds"]

_TFDS_SPLITS = {"train": "training", "test": "test"}


class Drive(tfds.core.GeneratorBasedBuilder):
    """DRIVE: 40 fundus photographs (20 train, 20 test) with manual vessel labels and FOV masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images, 1st_manual vessel labels and field-of-view masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download DRIVE (https://drive.grand-challenge.org/) and extract it; pass the folder that holds "
        "training/ and test/ (or DRIVE/ with them) as manual_dir. The split needs images/, 1st_manual/ and mask/.")

    def _info(self) -> tfds.core.DatasetInfo:
        def pixels(*shape):
            return tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding="zlib")

        return tfds.core.DatasetInfo(
            builder=self,
            description="DRIVE retinal vessel segmentation (Staal et al., IEEE TMI 2004).",
            features=tfds.features.FeaturesDict({
                "name": tfds.features.Text(),
                "image": pixels(None, None, 3),
                "vessels": pixels(None, None),
                "mask": pixels(None, None),
            }),
            homepage="https://drive.grand-challenge.org/",
        )

    def _split_generators(self, dl_manager: Any):
        root = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(root, folder) for split, folder in _TFDS_SPLITS.items()}

    def _generate_examples(self, root: Path, split: str):
        source = DriveFolder(root, split)
        if not source.has_labels:
            raise FileNotFoundError(f"DRIVE {split}: the manual directory {source.root} has no 1st_manual labels for "
                                    "every image; the TFDS builder needs them")
        for k in range(len(source)):
            ex = source[k]
            yield ex.name, {"name": ex.name, "image": ex.image, "vessels": ex.vessels.astype(np.uint8),
                            "mask": ex.mask.astype(np.uint8)}


class DriveTFDS(Sequence[DriveExample]):
    """A prepared ``drive`` split through ``tfds.data_source`` (random access)."""

    def __init__(self, records: Any):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, k: int) -> DriveExample:  # type: ignore[override]
        r = self._records[record_index(k, len(self))]
        name = r["name"].decode() if isinstance(r["name"], bytes) else str(r["name"])
        return DriveExample(name, np.asarray(r["image"], np.uint8), np.asarray(r["vessels"]) > 0,
                            np.asarray(r["mask"]) > 0)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from jaxretina.data.drive import stack_examples

        return stack_examples([self[k] for k in range(len(self))])


def drive_tfds(data_dir: str | os.PathLike | None = None, split: str = "train", *,
               manual_dir: str | os.PathLike | None = None) -> DriveTFDS:
    """The TFDS ``drive`` split ``"train"`` or ``"test"`` in ``data_dir``; prepared first from
    ``manual_dir`` (the DRIVE folder) when it is not yet."""
    if split not in _TFDS_SPLITS:
        raise ValueError(f"drive_tfds: split must be one of {sorted(_TFDS_SPLITS)}; found {split!r}")
    kwargs = {} if data_dir is None else {"data_dir": os.fspath(Path(data_dir).expanduser())}
    builder = Drive(file_format="array_record", **kwargs)
    if not builder.is_prepared():
        if manual_dir is None:
            raise FileNotFoundError(f"TFDS dataset 'drive' is not prepared in {builder.data_dir}; pass manual_dir= "
                                    "(the extracted DRIVE folder) to prepare it, or read that folder with "
                                    "jaxretina.data.drive_folder")
        manual = Path(manual_dir).expanduser()
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    return DriveTFDS(builder.as_data_source(split=split))
