"""Training: fine-tuning the DR graders (:mod:`~jaxretina.train.trainer`, seeds 001 and 002) and
retraining DRIU for vessels (:mod:`~jaxretina.train.segmentation`, seed 000).

Both are optax + Adam with jitted steps, only the named layers trained (their Adam moments
alone kept), Orbax checkpoints every N steps with exact resume, and a progress bar.

Example::

    >>> grader_trainer = train.Trainer(grader, grader_variables, trainable=("features.denseblock2", "classifier"),
    ...                                learning_rate=1e-4)            # seed 002: train.SEED002_TRAINABLE
    >>> trainer = train.SegmentationTrainer(model, variables)          # seed 000: BCE, every layer of DRIU
"""

from jaxretina.train.segmentation import (
    SEED000_LEARNING_RATE, SEED000_STEPS, SegmentationTrainer, seed000_schedule,
)
from jaxretina.train.trainer import (
    SEED001_SCHEDULE, SEED001_TRAINABLE, SEED002_TRAINABLE, SEED002_TRAINABLE_BY_MODEL, Trainer, TrainState, augment_fundus, piecewise_constant,
    resize_to, trainable_paths, transfer_variables,
)

__all__ = [
    "SEED000_LEARNING_RATE", "SEED000_STEPS", "SEED001_SCHEDULE", "SEED001_TRAINABLE", "SEED002_TRAINABLE", "SEED002_TRAINABLE_BY_MODEL",
    "SegmentationTrainer", "Trainer", "TrainState", "augment_fundus", "piecewise_constant", "resize_to",
    "seed000_schedule", "trainable_paths", "transfer_variables",
]
