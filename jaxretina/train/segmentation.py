"""Retraining DRIU for vessels (seed 000): binary cross-entropy, Adam, one image per step.

The seed loads the Caffe weights into its PyTorch port and fine-tunes *the entire network*
(trunk and specialised layers) on DRIVE for 20 000 iterations with Adam, one image per
iteration, ``lr = 10⁻⁶`` "gradually decreased", and the plain BCE loss (not HED's
class-balanced one): ``ℓ = −Σ_j [y_j log σ(z_j) + (1 − y_j) log(1 − σ(z_j))] / n`` over the
image's pixels.  :class:`SegmentationTrainer` is :class:`jaxretina.train.Trainer` with that loss:
the same jitted steps, Orbax checkpoints every N steps, exact resume and progress bar.

The seed does not say how the rate decreases: :func:`seed000_schedule` decays it
exponentially to a tenth over the run (a choice; pass any optax schedule).  It does not say
whether the loss covers the whole image or the field of view: ``region="image"`` (default,
the plain BCE of the whole image) or ``"fov"`` (only the FOV mask's pixels).

Example::

    >>> src = data.drive_folder("~/DRIVE", "training")
    >>> model, variables = jaxretina.load("driu", "DRIU_DRIVE.caffemodel")
    >>> trainer = SegmentationTrainer(model, variables)                 # all layers train
    >>> state, history = trainer.fit(src, lambda start: data.shuffled(len(src), 1, start=start),
    ...                              steps=2, checkpoint_dir="runs/seed000", checkpoint_every=1,
    ...                              progress=False)                    # seed 000: 20000 steps
    >>> len(history), sorted(history[0])[:2]
    (2, ['accuracy', 'images_per_s'])
    >>> report = trainer.evaluate(state, data.drive_folder("~/DRIVE", "test"))["report"]
    >>> 0 <= report["mean_miou"] <= 1
    True
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxretina import metrics
from jaxretina.data.drive import drive_batches
from jaxretina.preprocess import seed000_driu_input
from jaxretina.train.trainer import Trainer, TrainState

__all__ = ["SEED000_STEPS", "SEED000_LEARNING_RATE", "seed000_schedule", "SegmentationTrainer"]

SEED000_STEPS = 20_000
SEED000_LEARNING_RATE = 1e-6


def seed000_schedule(steps: int = SEED000_STEPS, *, learning_rate: float = SEED000_LEARNING_RATE,
                     final_fraction: float = 0.1) -> optax.Schedule:
    """``lr(t) = learning_rate · final_fraction^(t / steps)``: 10⁻⁶ decaying smoothly to 10⁻⁷."""
    if not (isinstance(steps, int) and steps >= 1 and 0 < final_fraction <= 1):
        raise ValueError(f"seed000_schedule: need steps >= 1 and 0 < final_fraction <= 1; found {steps!r}, "
                         f"{final_fraction!r}")
    return optax.exponential_decay(learning_rate, transition_steps=steps, decay_rate=final_fraction)


class SegmentationTrainer(Trainer):
    """Binary vessel segmentation training on DRIVE-style batches (image, vessels, FOV mask).

    Args:
      model, variables: a segmentation model returning one logit map (N, H, W, 1) (DRIU).
      trainable: ``"all"`` (every layer, as the seed) or dotted module prefixes.
      learning_rate: float or optax schedule (default :func:`seed000_schedule`).
      preprocess: jittable ``(uint8 images (B, H, W, 3), masks (B, H, W)) -> model input``
        (default :func:`jaxretina.preprocess.seed000_driu_input`).
      region: ``"image"`` (BCE over every pixel, the seed) or ``"fov"`` (inside the FOV mask only).
    """

    def __init__(self, model: Any, variables: Any, *, trainable: str | Sequence[str] = "all",
                 learning_rate: Any = None, preprocess: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                 region: str = "image", seed: int = 0):
        if region not in ("image", "fov"):
            raise ValueError(f"SegmentationTrainer: region must be 'image' or 'fov'; found {region!r}")
        if trainable == "all":
            trainable = tuple(variables["params"]) if "params" in variables else ()
        super().__init__(model, variables, trainable=trainable,
                         learning_rate=seed000_schedule() if learning_rate is None else learning_rate, seed=seed)
        self.preprocess = preprocess or seed000_driu_input
        self.region = region

    def _loss(self, trainable, state: TrainState, images, vessels, masks, valid):
        x = self.preprocess(images, masks)
        logits, updates = self.model.apply(self.variables(state, trainable), x, train=self.mode,
                                           mutable=["batch_stats"])
        if logits.ndim != 4 or logits.shape[-1] != 1:
            raise ValueError(f"SegmentationTrainer: the model must return one logit map (B, H, W, 1); found "
                             f"{logits.shape}")
        z = logits[..., 0]
        y = vessels.astype(z.dtype)
        weight = masks.astype(z.dtype) if self.region == "fov" else jnp.ones_like(z)
        weight = weight * valid.astype(z.dtype)[:, None, None]
        total = jnp.maximum(weight.sum(), 1)
        loss = (optax.sigmoid_binary_cross_entropy(z, y) * weight).sum() / total
        correct = (((z > 0) == (y > 0.5)).astype(z.dtype) * weight).sum() / total
        return loss, (updates.get("batch_stats", state.batch_stats), correct)

    def _batch_arrays(self, batch: Mapping[str, Any]) -> tuple[jax.Array, ...]:
        valid = batch.get("valid", np.ones(len(batch["image"]), bool))
        return (jnp.asarray(batch["image"]), jnp.asarray(batch["vessels"], bool), jnp.asarray(batch["mask"], bool),
                jnp.asarray(valid))

    def _batches(self, source, order: Iterator[Any], *, steps: int, size: int | None, workers: int):
        del size  # DRIVE images share one shape: no resizing
        return drive_batches(source, order, steps=steps, workers=workers)

    def _predict(self, state: TrainState, images, masks):
        logits = self.model.apply(self.variables(state), self.preprocess(images, masks), train=False)
        return jax.nn.sigmoid(logits[..., 0])

    def predict(self, state: TrainState, images: Any, masks: Any) -> jax.Array:  # type: ignore[override]
        """Vessel probabilities (B, H, W) in evaluation mode."""
        return self._eval_step(state, jnp.asarray(images), jnp.asarray(masks, bool))

    def evaluate(self, state: TrainState, source: Sequence[Any], *, batch_size: int = 1,  # type: ignore[override]
                 threshold: float = 0.5, erode: int = 1) -> dict[str, Any]:
        """Probabilities over a whole source and :func:`jaxretina.metrics.segmentation_report`
        (mean masked mIoU, accuracy, sensitivity, specificity, AUC) against its labels."""
        from jaxretina.data.sampling import sequential

        probs, vessels, masks, names = [], [], [], []
        for batch in drive_batches(source, sequential(len(source), batch_size)):
            keep = batch["valid"]
            probs.append(np.asarray(self.predict(state, batch["image"], batch["mask"]))[keep])
            vessels.append(batch["vessels"][keep])
            masks.append(batch["mask"][keep])
            names += [n for n, k in zip(batch["name"], keep) if k]
        probs, vessels, masks = (np.concatenate(a) for a in (probs, vessels, masks))
        report = metrics.segmentation_report(probs, vessels, masks, threshold=threshold, erode=erode)
        return {"probabilities": probs, "vessels": vessels, "masks": masks, "names": names, "report": report}
