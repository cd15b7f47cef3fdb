"""Guided backprop and deconvnet in PyTorch, written independently of jaxretina: a custom
``torch.autograd.Function`` per rule, patched in for ``F.relu`` / ``torch.relu`` / ``nn.ReLU`` and
``nn.LeakyReLU`` for the duration of a ``with`` block (so functional ReLUs, which Captum's hooks
miss — torchvision Inception's ``BasicConv2d`` — follow the rule too)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def _rule_function(kind: str, slope: float):
    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.where(x > 0, x, slope * x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            positive = g.clamp(min=0)
            if kind == "deconvnet":
                return positive
            return positive * torch.where(x > 0, torch.ones_like(x), torch.full_like(x, slope))

    return Rule


@contextlib.contextmanager
def relu_rule(kind: str):
    """Inside the block every ReLU and LeakyReLU backpropagates with ``kind`` ("guided" or
    "deconvnet"); the forward pass is unchanged."""
    assert kind in ("guided", "deconvnet")
    relu = _rule_function(kind, 0.0)
    saved = (F.relu, torch.relu, torch.nn.ReLU.forward, torch.nn.LeakyReLU.forward)
    F.relu = lambda x, inplace=False: relu.apply(x)
    torch.relu = lambda x: relu.apply(x)
    torch.nn.ReLU.forward = lambda self, x: relu.apply(x)
    torch.nn.LeakyReLU.forward = lambda self, x: _rule_function(kind, self.negative_slope).apply(x)
    try:
        yield
    finally:
        F.relu, torch.relu, torch.nn.ReLU.forward, torch.nn.LeakyReLU.forward = saved
