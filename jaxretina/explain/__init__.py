"""Attribution methods as pure functions of one example (batch with ``jax.vmap``).

* :func:`grad_cam`, :func:`grad_cam_plus_plus`, :func:`hires_cam`, :func:`grad_cam_elementwise`,
  :func:`xgrad_cam`, :func:`layer_cam`, :func:`eigen_cam`, :func:`eigen_grad_cam` — every layer
  from one forward + backward pass; :func:`full_grad` — every bias layer's gradient map in one pass (:func:`class_activation_maps` for a map of your own);
  :func:`ablation_cam`, :func:`score_cam` — one batched run per channel.
* :func:`occlusion`, :func:`occlusion_sensitivity` (MONAI's), :func:`feature_ablation`, :func:`rise`, :func:`extremal_perturbation`, :func:`shapley_values`,
  :func:`shapley_value_sampling`, :func:`lime`, :func:`kernel_shap` — every perturbed input
  batched in chunks.
* :func:`layer_gradients` — activations and target gradients at every layer.
* :func:`integrated_gradients` — all quadrature steps ``vmap``-ed, chunked to a memory budget
  (or ``steps="auto"`` until a completeness tolerance),
  with the completeness error ``delta``.
  :func:`ig_chunk_for_budget` picks the chunk for a memory budget from XLA's own accounting.
* :func:`saliency`, :func:`gradient_x_input`, :func:`smoothgrad`.
* :func:`guided_backprop`, :func:`deconvnet` — the model's ReLUs with swapped derivatives;
  :func:`layerwise_guided_backprop` — every layer's guided map in one program (seed 003).
* :func:`integrated_gradients_vector`, :func:`class_integrated_gradients`,
  :func:`layer_integrated_gradients`, :func:`neuron_integrated_gradients`, :func:`neuron_study`
  — IG for several outputs at once, to a layer's neurons, from neurons to pixels (seed 001).
* :func:`activation_maps`, :func:`dead_filters` / :func:`filter_peaks`,
  :func:`deconvnet_reconstruction` — seed 004's feature visualisation (Zeiler–Fergus
  deconvnet as a rule-swapped VJP).
* :func:`cam_coverage` — one CAM cell next to the image and a lesion mask (seed 002).
* :func:`ig_counterfactual`, :func:`gradient_counterfactual`, :func:`linearity_study`.
* :func:`model_fn` — (model, variables, target) as a function of one example.
"""

from jaxretina.explain.core import model_fn
from jaxretina.explain.cam import (
    PYTORCH_GRAD_CAM_EPS, class_activation_maps, grad_cam, grad_cam_plus_plus, layer_gradients,
)
from jaxretina.explain.cam_family import (
    PYTORCH_GRAD_CAM_XGRAD_EPS, eigen_cam, eigen_grad_cam, grad_cam_elementwise, hires_cam, layer_cam,
    principal_projection, xgrad_cam,
)
from jaxretina.explain.full_grad import PYTORCH_GRAD_CAM_FULLGRAD_EPS, full_grad
from jaxretina.explain.cam_coverage import CamCoverage, cam_coverage
from jaxretina.explain.cam_perturbation import ablation_cam, resize_align_corners, score_cam
from jaxretina.explain.occlusion import feature_ablation, occlusion, occlusion_windows
from jaxretina.explain.extremal import ExtremalPerturbation, TORCHRAY_SGD, extremal_perturbation, torchray_sgd
from jaxretina.explain.occlusion_sensitivity import MONAI_MODES, occlusion_sensitivity
from jaxretina.explain.rise import rise, rise_mask, rise_masks
from jaxretina.explain.coalitions import grid_features
from jaxretina.explain.shapley import (
    EXACT_SHAPLEY_MAX_FEATURES, shapley_permutations, shapley_value_sampling, shapley_values,
)
from jaxretina.explain.surrogate import (
    KERNEL_SHAP_ENDPOINT_WEIGHT, kernel_shap, kernel_shap_samples, lime, lime_samples, linear_surrogate,
)
from jaxretina.explain.gradients import (
    NOISE_TUNNEL,
    Attribution, gradient_x_input, integrated_gradients, saliency, smoothgrad,
)
from jaxretina.explain.counterfactuals import (
    LinearityStudy, exponential_grid, gradient_counterfactual, ig_counterfactual, linearity_study,
)
from jaxretina.explain.neurons import (
    NeuronStudy, class_integrated_gradients, integrated_gradients_vector, layer_integrated_gradients,
    neuron_integrated_gradients, neuron_study, resultant_active_region, top_neurons,
)
from jaxretina.explain.features import activation_maps, dead_filters, deconvnet_reconstruction, filter_peaks
from jaxretina.explain.deeplift import deeplift, deeplift_shap
from jaxretina.explain.excitation import excitation_backprop
from jaxretina.explain.guided_cam import guided_grad_cam, guided_grad_cams
from jaxretina.explain.layer_paths import (
    internal_influence, layer_conductance, layer_gradient_x_activation, neuron_conductance,
)
from jaxretina.explain.lrp import lrp, output_relevance, propagate
from jaxretina.explain.shap import ShapDraws, gradient_shap, shap_draws
from jaxretina.explain.memory import chunk_for_budget, chunk_memory, ig_chunk_for_budget, ig_chunk_memory
from jaxretina.explain.quadrature import RULES, quadrature
from jaxretina.explain.relu_rules import (
    deconvnet, deconvnet_relu, deconvnet_rule, guided, guided_backprop, guided_relu, layerwise_guided_backprop,
)

__all__ = [
    "activation_maps",
    "dead_filters",
    "deconvnet_reconstruction",
    "filter_peaks",
    "Attribution",
    "CamCoverage",
    "LinearityStudy",
    "NeuronStudy",
    "cam_coverage",
    "class_integrated_gradients",
    "exponential_grid",
    "gradient_counterfactual",
    "ig_chunk_for_budget",
    "ig_chunk_memory",
    "chunk_for_budget",
    "chunk_memory",
    "ig_counterfactual",
    "integrated_gradients_vector",
    "layer_integrated_gradients",
    "linearity_study",
    "neuron_integrated_gradients",
    "neuron_study",
    "resultant_active_region",
    "top_neurons",
    "RULES",
    "deconvnet",
    "deconvnet_relu",
    "deconvnet_rule",
    "guided",
    "layerwise_guided_backprop",
    "grad_cam",
    "grad_cam_plus_plus",
    "PYTORCH_GRAD_CAM_EPS",
    "PYTORCH_GRAD_CAM_XGRAD_EPS",
    "class_activation_maps",
    "hires_cam",
    "grad_cam_elementwise",
    "xgrad_cam",
    "layer_cam",
    "eigen_cam",
    "eigen_grad_cam",
    "principal_projection",
    "full_grad",
    "PYTORCH_GRAD_CAM_FULLGRAD_EPS",
    "ablation_cam",
    "score_cam",
    "resize_align_corners",
    "occlusion",
    "occlusion_windows",
    "feature_ablation",
    "rise",
    "rise_mask",
    "rise_masks",
    "occlusion_sensitivity",
    "MONAI_MODES",
    "extremal_perturbation",
    "ExtremalPerturbation",
    "torchray_sgd",
    "TORCHRAY_SGD",
    "grid_features",
    "shapley_values",
    "shapley_value_sampling",
    "shapley_permutations",
    "EXACT_SHAPLEY_MAX_FEATURES",
    "lime",
    "lime_samples",
    "kernel_shap",
    "kernel_shap_samples",
    "linear_surrogate",
    "KERNEL_SHAP_ENDPOINT_WEIGHT",
    "gradient_x_input",
    "guided_backprop",
    "guided_relu",
    "integrated_gradients",
    "layer_gradients",
    "lrp",
    "guided_grad_cam",
    "guided_grad_cams",
    "excitation_backprop",
    "layer_gradient_x_activation",
    "internal_influence",
    "layer_conductance",
    "neuron_conductance",
    "deeplift",
    "deeplift_shap",
    "gradient_shap",
    "shap_draws",
    "ShapDraws",
    "NOISE_TUNNEL",
    "model_fn",
    "output_relevance",
    "propagate",
    "quadrature",
    "saliency",
    "smoothgrad",
]
