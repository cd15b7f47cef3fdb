"""torchvision DenseNet prepared as a reference: random BatchNorm statistics, and a wrapper
whose every ReLU is an ``nn.ReLU`` module, none in place (so Captum's rules and
pytorch-grad-cam's hooks see every activation unmodified)."""

from __future__ import annotations

import torch


def randomize(model: torch.nn.Module, seed: int, *, mean_std: float = 0.3, bias_std: float = 0.2) -> torch.nn.Module:
    """Random BatchNorm running statistics and affine parameters (eval mode uses them), random
    classifier biases; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):  # 2d and 3d (DS6) alike
                mod.running_mean.normal_(0, mean_std, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, bias_std, generator=g)
            elif isinstance(mod, torch.nn.Linear):
                mod.bias.normal_(0, bias_std, generator=g)
    return model.eval()


class DenseNetModules(torch.nn.Module):
    """A torchvision DenseNet with its last (functional) ReLU as a module and no in-place ReLUs."""

    def __init__(self, tv: torch.nn.Module):
        super().__init__()
        self.features, self.relu, self.classifier = tv.features, torch.nn.ReLU(), tv.classifier
        for m in self.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        self.eval()

    def forward(self, x):
        h = torch.nn.functional.adaptive_avg_pool2d(self.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(h, 1))
