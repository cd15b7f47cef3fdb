"""Seed 001's grader in PyTorch (torchvision Inception V3 trunk, two fully connected layers,
5 logits) with random weights and BatchNorm statistics — the reference of the Inception tests."""

from __future__ import annotations

import torch
import torchvision

from tests.reference.densenet_torch import randomize


def reference(num_classes=5, aux_logits=True, transform_input=False, seed=0):
    """torchvision ``inception_v3`` with random weights and random BatchNorm statistics, eval mode."""
    torch.manual_seed(seed)
    tv = torchvision.models.inception_v3(weights=None, num_classes=num_classes, aux_logits=aux_logits,
                                         transform_input=transform_input, init_weights=False)
    return randomize(tv, seed=seed + 1, mean_std=0.2, bias_std=0.1)


class Seed001(torch.nn.Module):
    """Seed 001's grader in PyTorch: torchvision's trunk without its top, two fully connected
    layers with ReLU, 5 logits."""

    def __init__(self, hidden=(64, 32)):
        super().__init__()
        self.trunk = reference(aux_logits=False, seed=5)
        self.trunk.fc = torch.nn.Identity()
        self.head = torch.nn.Module()
        self.head.fc1, self.head.fc2 = torch.nn.Linear(2048, hidden[0]), torch.nn.Linear(*hidden)
        self.head.out = torch.nn.Linear(hidden[1], 5)

    def forward(self, x):
        h = torch.relu(self.head.fc1(self.trunk(x)))
        return self.head.out(torch.relu(self.head.fc2(h)))
