"""Fine-tuning the DR graders with optax: named layers train, the rest (BatchNorm statistics
included) stays frozen; Adam, cross-entropy, piecewise-constant learning rates, Orbax
checkpoints every N steps with resume, and a progress bar with loss and throughput.

Only the trainable parameters are differentiated (the backward pass stops at the first
trainable layer) and only they carry Adam moments.  BatchNorms inside trainable layers use
batch statistics and update their running averages; frozen ones normalise with their stored
statistics (:class:`jaxretina.models.layers.Training`).

Example (seed 002: DenseNet121, last three dense layers of block 4 + classifier)::

    model, variables = jaxretina.load("densenet121", "densenet121.pth", num_classes=5)
    model = model.clone(normalization=preprocess.imagenet_normalization(255.0))
    trainer = train.Trainer(model, variables, trainable=train.SEED002_TRAINABLE, learning_rate=1e-4,
                            preprocess=train.resize_to(224))
    src = data.kaggle_manual_dir("~/eyepacs", "train")
    order = lambda start: data.weighted(src.labels, data.SEED002_WEIGHTS, 32, start=start)
    state = trainer.fit(src, order, steps=2000, size=512, checkpoint_dir="runs/seed002", checkpoint_every=200)
    variables = trainer.variables(state)
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxretina.data.batching import batches as make_batches
from jaxretina.models.layers import Training
from jaxretina.taps import params_only

__all__ = [
    "SEED001_TRAINABLE", "SEED002_TRAINABLE", "SEED002_TRAINABLE_BY_MODEL", "SEED001_SCHEDULE", "piecewise_constant", "trainable_paths",
    "resize_to", "transfer_variables", "augment_fundus", "TrainState", "Trainer",
]

# Seed 001: the two added fully connected layers and the 5-way output (InceptionV3 head="seed001").
SEED001_TRAINABLE = ("head",)
# Seed 002: the classifier and the last three dense layers of DenseNet121's block 4.
SEED002_TRAINABLE = tuple(f"features.denseblock4.denselayer{i}" for i in (14, 15, 16)) + ("classifier",)
# Seed 002's one recipe for its three networks: the new classifier and the last block containing
# convolutions train (DenseNet121: the last three dense layers of block 4, as above).
SEED002_TRAINABLE_BY_MODEL = {
    "densenet121": SEED002_TRAINABLE,
    "resnet101": ("layer4", "fc"),
    "vgg16": ("features.24", "features.26", "features.28", "classifier"),
}
# Seed 001: 0.001 for 550 mini-batches, 0.0002 for 350, 0.00005 for 495.
SEED001_SCHEDULE = ((1e-3, 2e-4, 5e-5), (550, 350, 495))


def piecewise_constant(values: Sequence[float], lengths: Sequence[int]) -> optax.Schedule:
    """``values[i]`` for ``lengths[i]`` steps in turn (the last value continues afterwards)."""
    if len(values) != len(lengths) or not values or any(int(n) <= 0 for n in lengths):
        raise ValueError(f"piecewise_constant: need one positive length per value; found {values}, {lengths}")
    boundaries = np.cumsum(lengths)[:-1]
    return optax.join_schedules([optax.constant_schedule(float(v)) for v in values], [int(b) for b in boundaries])


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def trainable_paths(params: Mapping[str, Any], trainable: Sequence[str]) -> set[tuple]:
    """Parameter paths (tuples) under the named modules (dotted prefixes such as
    ``features.denseblock4.denselayer16`` or ``head``).  Every name must match something."""
    if isinstance(trainable, str):
        trainable = (trainable,)
    flat = traverse_util.flatten_dict(dict(params))
    mode = Training(tuple(trainable))
    chosen = {p for p in flat if mode.trains(_dotted(p[:-1]))}
    unmatched = [t for t in trainable if not any(Training((t,)).trains(_dotted(p[:-1])) for p in flat)]
    if unmatched or not trainable:
        modules = sorted({_dotted(p[:-1]) for p in flat})
        raise ValueError(f"trainable: {unmatched or 'nothing given'} match no parameters; module names look like "
                         f"{modules[:3]} … {modules[-3:]} ({len(modules)} modules)")
    return chosen


def transfer_variables(source: Mapping[str, Any], model: Any, *, seed: int = 0) -> tuple[dict, list[str]]:
    """Variables for ``model`` taking every parameter and BatchNorm statistic of ``source`` whose
    path and shape match, and a fresh initialisation for the rest (a new head: e.g. ImageNet
    DenseNet121 → 5 DR grades, torchvision Inception V3 → seed 001's head).

    Returns ``(variables, reinitialised)``, the dotted paths that did not come from ``source``.
    The rest is drawn by :func:`jaxretina.models.random_variables` (``seed``; kernels
    N(0, 1/fan_in) as Flax's LeCun default, zero biases, identity BatchNorm): NumPy draws, no
    compile of the model's init (Inception V3's costs ~20 s of XLA on a 2-core CPU).

    Example::

      >>> _, imagenet = jaxretina.load("densenet121", "grader.pth")   # e.g. densenet121-a639ec97.pth
      >>> variables, fresh = train.transfer_variables(imagenet, models.DenseNet121(num_classes=2))
      >>> fresh                                # the head has another shape: initialised afresh
      ['params.classifier.bias', 'params.classifier.kernel']
    """
    from jaxretina.models import random_variables

    fresh = random_variables(model, seed=seed, bias_std=0.0)
    src = traverse_util.flatten_dict(params_only(dict(source)))
    out, reinitialised = {}, []
    for path, value in traverse_util.flatten_dict(fresh).items():
        have = src.get(path)
        if have is not None and tuple(have.shape) == tuple(value.shape):
            out[path] = jnp.asarray(have, value.dtype)
        else:
            out[path] = value
            reinitialised.append(_dotted(path))
    return traverse_util.unflatten_dict(out), reinitialised


def resize_to(size: int) -> Callable[[jax.Array], jax.Array]:
    """Batch preprocessing: uint8 (B, S, S, 3) -> float32 (B, size, size, 3) on 0..255, antialiased."""

    def fn(images):
        images = images.astype(jnp.float32)
        if images.shape[1:3] == (size, size):
            return images
        return jax.image.resize(images, (images.shape[0], size, size, 3), method="linear", antialias=True)

    return fn


def augment_fundus(key: jax.Array, images: jax.Array, *, max_degrees: float = 180.0, max_shift: float = 0.05,
                   gray_probability: float = 0.1, jitter: float = 0.1) -> jax.Array:
    """Seed 002's augmentation, per image, on the device: random rotation (±``max_degrees``,
    bilinear, black outside), horizontal and vertical flips, translation (±``max_shift`` of the
    size), grayscale with ``gray_probability``, brightness and contrast jitter (×(1 ± jitter)).

    ``images``: float (B, H, W, 3) on 0..255; returns the same shape, clipped to [0, 255].
    """
    def one(k, im):
        ks = jax.random.split(k, 7)
        h, w = im.shape[:2]
        angle = jnp.deg2rad(jax.random.uniform(ks[0], (), minval=-max_degrees, maxval=max_degrees))
        shift = jax.random.uniform(ks[1], (2,), minval=-max_shift, maxval=max_shift) * jnp.array([h, w], im.dtype)
        flips = jax.random.bernoulli(ks[2], 0.5, (2,))
        rows, cols = jnp.meshgrid(jnp.arange(h, dtype=im.dtype), jnp.arange(w, dtype=im.dtype), indexing="ij")
        cy, cx = (h - 1) / 2, (w - 1) / 2
        y, x = rows - cy - shift[0], cols - cx - shift[1]
        y = jnp.where(flips[0], -y, y)
        x = jnp.where(flips[1], -x, x)
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        src = (cos * y - sin * x + cy, sin * y + cos * x + cx)
        out = jnp.stack([jax.scipy.ndimage.map_coordinates(im[..., c], src, order=1, mode="constant", cval=0.0)
                         for c in range(im.shape[-1])], axis=-1)
        gray = jnp.broadcast_to(out.mean(-1, keepdims=True), out.shape)
        out = jnp.where(jax.random.bernoulli(ks[3], gray_probability), gray, out)
        bright = 1 + jax.random.uniform(ks[4], (), minval=-jitter, maxval=jitter)
        contrast = 1 + jax.random.uniform(ks[5], (), minval=-jitter, maxval=jitter)
        mean = out.mean()
        return jnp.clip((out - mean) * contrast + mean * bright, 0.0, 255.0)

    images = images.astype(jnp.float32)
    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


class TrainState(NamedTuple):
    """Everything a resumed run needs: ``step`` (int32), trainable and frozen parameters (nested
    dicts), ``batch_stats`` and the optimizer state of the trainable parameters."""

    step: jax.Array
    trainable: dict
    frozen: dict
    batch_stats: dict
    opt_state: Any


@jax.jit
def _copy(tree):
    # fresh buffers in one program (not one small copy program per parameter shape)
    return jax.tree.map(jnp.copy, tree)


def _split(params, chosen):
    flat = traverse_util.flatten_dict(dict(params))
    train = {k: v for k, v in flat.items() if k in chosen}
    frozen = {k: v for k, v in flat.items() if k not in chosen}
    return traverse_util.unflatten_dict(train), traverse_util.unflatten_dict(frozen)


def _merge(a, b):
    flat = traverse_util.flatten_dict(a)
    flat.update(traverse_util.flatten_dict(b))
    return traverse_util.unflatten_dict(flat)


class Trainer:
    """Fine-tuning of one model: jitted train and evaluation steps (one compile each).

    Args:
      model, variables: e.g. from :func:`jaxretina.load`.
      trainable: dotted module prefixes to train (:data:`SEED001_TRAINABLE`, :data:`SEED002_TRAINABLE`).
      learning_rate: a float or an optax schedule (e.g. ``piecewise_constant(*SEED001_SCHEDULE)``).
      preprocess: jittable uint8 batch (B, S, S, 3) -> model input batch (default: to float32).
      augment: optional jittable ``(key, float images 0..255) -> images`` applied before
        ``preprocess`` in training only (e.g. :func:`augment_fundus`); keys from (seed, step).
      aux_weight: weight of an auxiliary head's loss (InceptionV3 with ``aux_logits``; torchvision 0.4).
      seed: dropout randomness (folded with the step).
    """

    def __init__(self, model: Any, variables: Any, *, trainable: Sequence[str], learning_rate: Any = 1e-4,
                 preprocess: Callable[[jax.Array], jax.Array] | None = None,
                 augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None, aux_weight: float = 0.4,
                 seed: int = 0):
        variables = params_only(variables)
        if "params" not in variables:
            raise ValueError(f"Trainer: variables need a 'params' collection; found {sorted(variables)}")
        self.model, self.seed, self.aux_weight = model, seed, aux_weight
        self.mode = Training(tuple([trainable] if isinstance(trainable, str) else trainable))
        self.chosen = trainable_paths(variables["params"], self.mode.trainable)
        self.preprocess = preprocess or (lambda images: images.astype(jnp.float32))
        self.augment = augment
        self.optimizer = optax.adam(learning_rate)
        self._variables = variables
        self._train_step = jax.jit(self._step, donate_argnums=0)
        self._eval_step = jax.jit(self._predict)

    # -- state -------------------------------------------------------------------------------
    def init(self) -> TrainState:
        """The starting state from the given variables (step 0)."""
        # copies: train steps donate the state's buffers, the given variables must survive them
        variables = _copy(self._variables)
        train, frozen = _split(variables["params"], self.chosen)
        return TrainState(jnp.zeros((), jnp.int32), train, frozen, dict(variables.get("batch_stats", {})),
                          self.optimizer.init(train))

    def variables(self, state: TrainState, trainable: dict | None = None) -> dict:
        """Model variables (``params``, ``batch_stats``) of a state, for ``model.apply`` and the
        explainers; ``trainable`` in place of the state's own (what the loss differentiates)."""
        out = {"params": _merge(state.frozen, state.trainable if trainable is None else trainable)}
        if state.batch_stats:
            out["batch_stats"] = state.batch_stats
        return out

    # -- steps -------------------------------------------------------------------------------
    def _loss(self, trainable, state, images, labels, valid):
        variables = self.variables(state, trainable)
        rng = jax.random.fold_in(jax.random.key(self.seed), state.step)
        if self.augment is not None:
            images = self.augment(jax.random.fold_in(rng, 1), images.astype(jnp.float32))
        out, updates = self.model.apply(variables, self.preprocess(images), train=self.mode,
                                        mutable=["batch_stats"], rngs={"dropout": rng})
        logits, aux = out if isinstance(out, tuple) else (out, None)
        w = valid.astype(logits.dtype) / jnp.maximum(valid.sum(), 1).astype(logits.dtype)
        loss = (optax.softmax_cross_entropy_with_integer_labels(logits, labels) * w).sum()
        if aux is not None:
            loss = loss + self.aux_weight * (optax.softmax_cross_entropy_with_integer_labels(aux, labels) * w).sum()
        correct = ((logits.argmax(-1) == labels).astype(w.dtype) * w).sum()
        return loss, (updates.get("batch_stats", state.batch_stats), correct)

    def _step(self, state: TrainState, *arrays):
        (loss, (stats, accuracy)), grads = jax.value_and_grad(self._loss, has_aux=True)(
            state.trainable, state, *arrays)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts and floats
            updates, opt_state = self.optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        new = TrainState(state.step + 1, trainable, state.frozen, stats, opt_state)
        return new, {"loss": loss, "accuracy": accuracy}

    def _predict(self, state: TrainState, images):
        logits = self.model.apply(self.variables(state), self.preprocess(images), train=False)
        return jax.nn.softmax(logits, axis=-1)

    def train_step(self, state: TrainState, batch: Mapping[str, Any]) -> tuple[TrainState, dict]:
        """One Adam step on a batch from :func:`jaxretina.data.batches` (``state`` is donated)."""
        return self._train_step(state, *self._batch_arrays(batch))

    def _batch_arrays(self, batch: Mapping[str, Any]) -> tuple[jax.Array, ...]:
        # the arrays _loss takes after (trainable, state), from one batch dict
        valid = batch.get("valid", np.ones(len(batch["label"]), bool))
        return jnp.asarray(batch["image"]), jnp.asarray(batch["label"], jnp.int32), jnp.asarray(valid)

    def _batches(self, source: Sequence[Any], order: Iterator[Any], *, steps: int, size: int | None,
                 workers: int) -> Iterator[dict]:
        if size is None:
            raise ValueError("fit: give size= (the square side images are resized to on the host)")
        return make_batches(source, order, size=size, steps=steps, workers=workers)

    def predict(self, state: TrainState, images: Any) -> jax.Array:
        """Class probabilities (B, C) in evaluation mode."""
        return self._eval_step(state, jnp.asarray(images))

    def evaluate(self, state: TrainState, source: Sequence[Any], *, batch_size: int, size: int) -> dict[str, np.ndarray]:
        """Probabilities, predictions and labels over a whole source (padded last batch dropped)."""
        from jaxretina.data.sampling import sequential

        probs, labels = [], []
        for batch in make_batches(source, sequential(len(source), batch_size), size=size):
            p = self.predict(state, batch["image"])
            probs.append(np.asarray(p)[batch["valid"]])
            labels.append(batch["label"][batch["valid"]])
        probs = np.concatenate(probs)
        return {"probabilities": probs, "predictions": probs.argmax(-1), "labels": np.concatenate(labels)}

    # -- loop --------------------------------------------------------------------------------
    def fit(self, source: Sequence[Any], order: Callable[[int], Iterator[Any]], *, steps: int,
            size: int | None = None, checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 100,
            keep: int = 3, progress: bool = True, workers: int = 4,
            state: TrainState | None = None) -> tuple[TrainState, list[dict]]:
        """Train until ``steps`` total steps; resumes from the newest checkpoint in ``checkpoint_dir``.

        ``order(start)`` gives the batches' index arrays from batch number ``start`` (the samplers
        in :mod:`jaxretina.data` take ``start=``), so a resumed run sees the batches an
        uninterrupted one would.  Returns the final state and the per-step history (loss,
        accuracy, images/s).
        """
        if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
            raise ValueError(f"checkpoint_every must be a positive int; found {checkpoint_every!r}")
        manager = _manager(checkpoint_dir, keep) if checkpoint_dir else None
        state = state if state is not None else self.init()
        if manager is not None and manager.latest_step() is not None:
            state = _restore(manager, state)
        start = int(state.step)
        history: list[dict] = []
        bar = _progress(progress, start, steps)
        pending, t0, current = None, time.perf_counter(), start
        try:
            for batch in self._batches(source, order(start), size=size, steps=max(0, steps - start), workers=workers):
                state, metrics = self.train_step(state, batch)
                if pending is not None:  # read the previous step's numbers: no wait on this one
                    t0 = _record(history, bar, pending, t0)
                pending, current = (metrics, len(batch["image"])), current + 1
                if manager is not None and current % checkpoint_every == 0:
                    manager.save(current, args=_save_args(state))
            if pending is not None:
                _record(history, bar, pending, t0)
            if manager is not None:
                if manager.latest_step() != current:
                    manager.save(current, args=_save_args(state), force=True)
                manager.wait_until_finished()
        finally:
            if bar is not None:
                bar.close()
            if manager is not None:
                manager.close()
        return state, history


def _record(history, bar, pending, t0):
    metrics, n = pending
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    now = time.perf_counter()
    values["images_per_s"] = n / max(now - t0, 1e-9)
    history.append(values)
    if bar is not None:
        bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['images_per_s']:.1f}")
        bar.update(1)
    return now


def _progress(enabled, start, steps):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True)


def _manager(directory, keep):
    import orbax.checkpoint as ocp

    # fit() decides when to save (every checkpoint_every steps and at the end)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def _save_args(state):
    import orbax.checkpoint as ocp

    return ocp.args.StandardSave(state._asdict())


def _restore(manager, like: TrainState) -> TrainState:
    import orbax.checkpoint as ocp

    step = manager.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like._asdict())
    try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as err:  # noqa: BLE001 - a checkpoint of another model/config
        raise ValueError(f"cannot resume from checkpoint step {step} in {manager.directory}: it does not match this "
                         f"model and trainable set ({err})") from err
    return TrainState(**restored)
