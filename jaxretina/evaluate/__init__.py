"""Evaluating attribution maps: which of them can be trusted.

Every metric is a pure ``jax.numpy`` function of one example (an attribution map, and a region
mask where it needs one): ``jax.vmap`` batches it, ``jax.jit`` compiles it once per shape, and it
runs on whatever device holds the maps — inside the program that made them, without a copy to
the host.  2-D and 3-D alike; an optional field-of-view mask (``fov=``, e.g. the retina's disc)
leaves the positions outside it out of every count.

* localisation against an expert's region (:mod:`~jaxretina.evaluate.localisation`): pointing
  game (and its energy form), relevance mass, relevance rank, top-k intersection, AUROC, AUPRC,
  IoU/Dice after Otsu or top-q thresholding; :func:`chance_level` is what an uninformative map
  scores;
* complexity (:mod:`~jaxretina.evaluate.complexity`): sparseness (Gini), entropy, effective
  complexity, discrete (histogram) entropy;
* faithfulness (:mod:`~jaxretina.evaluate.faithfulness`): deletion and insertion curves (MoRF or
  LeRF order, any reference: a number, a half-gray or blurred image) with their areas, AOPC,
  faithfulness correlation, infidelity, the confidence change of the map-weighted input; ROAD
  (:mod:`~jaxretina.evaluate.road`), its removals filled by noisy linear imputation
  (:mod:`~jaxretina.evaluate.imputation`) — every perturbed input built on the device and
  batched through one compiled program;
* agreement between two maps (:mod:`~jaxretina.evaluate.agreement`): Pearson and Spearman rank
  correlation, SSIM (scikit-image's), top-k overlap; HOG features and the HOG similarity of
  Adebayo et al. (:mod:`~jaxretina.evaluate.hog`, scikit-image's ``hog``);
* randomisation (:mod:`~jaxretina.evaluate.randomisation`): cascading and independent model
  parameter randomisation (and the smooth and efficient MPRT), every re-initialised model built
  inside one compiled program; the random-logit test (the map of another class);
* robustness (:mod:`~jaxretina.evaluate.robustness`): max- and average-sensitivity, the local
  Lipschitz estimate — the explainer on noisy copies, batched the same way.

Example::

    >>> maps = jnp.stack([jnp.eye(6), jnp.ones((6, 6))])
    >>> diagonal = jnp.eye(6, dtype=bool)
    >>> jax.jit(jax.vmap(evaluate.localisation_auroc, in_axes=(0, None)))(maps, diagonal).tolist()
    [1.0, 0.5]
"""

from jaxretina.evaluate.agreement import SSIM_K1, SSIM_K2, pearson, spearman, ssim, top_k_overlap
from jaxretina.evaluate.complexity import (
    QUANTUS_SPARSENESS_EPS, discrete_entropy, effective_complexity, entropy, sparseness,
)
from jaxretina.evaluate.faithfulness import (
    Curve, aopc, confidence_change, draw_subset, faithfulness_correlation, infidelity, perturbation_curve,
)
from jaxretina.evaluate.hog import HOG_BLOCK_NORMS, hog, hog_similarity
from jaxretina.evaluate.imputation import linear_imputation, neighbour_weights
from jaxretina.evaluate.localisation import (
    Overlap, energy_pointing_game, localisation_auprc, localisation_auroc, otsu_threshold, pointing_game,
    relevance_mass, relevance_rank, threshold_overlap, top_k_intersection,
)
from jaxretina.evaluate.randomisation import (
    NOISE_STREAM, RANDOMISATION_MODES, draw_other_class, efficient_randomisation, parameter_layers,
    parameter_randomisation, random_logit, reinitialised,
)
from jaxretina.evaluate.regions import chance_level
from jaxretina.evaluate.road import ROAD_FRACTIONS, Road, road, road_combined, road_mask
from jaxretina.evaluate.robustness import avg_sensitivity, draw_noise, local_lipschitz, max_sensitivity

__all__ = ["chance_level", "pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank",
           "top_k_intersection", "localisation_auroc", "localisation_auprc", "threshold_overlap", "otsu_threshold",
           "Overlap", "sparseness", "entropy", "effective_complexity", "QUANTUS_SPARSENESS_EPS", "Curve",
           "perturbation_curve", "aopc", "infidelity", "confidence_change", "max_sensitivity", "avg_sensitivity", "local_lipschitz", "draw_noise",
           "spearman", "ssim", "top_k_overlap", "SSIM_K1", "SSIM_K2", "parameter_layers", "reinitialised",
           "parameter_randomisation", "RANDOMISATION_MODES", "linear_imputation", "neighbour_weights", "Road", "road",
           "road_combined", "road_mask", "ROAD_FRACTIONS", "pearson", "faithfulness_correlation", "draw_subset",
           "random_logit", "draw_other_class", "discrete_entropy", "efficient_randomisation", "NOISE_STREAM",
           "hog", "hog_similarity", "HOG_BLOCK_NORMS"]
