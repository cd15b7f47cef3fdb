"""DS6's ``U_Net_DeepSup`` written in PyTorch from its description (ARCHITECTURES.md §5), with a
base-width parameter — the independent reference of the UNet3D tests."""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, slope=None):
        super().__init__()
        act = (lambda: nn.LeakyReLU(slope)) if slope else (lambda: nn.ReLU())
        self.conv = nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), act(),
                                  nn.Conv3d(cout, cout, 3, padding=1), nn.BatchNorm3d(cout), act())

    def forward(self, x):
        return self.conv(x)


class UpConv(nn.Module):
    def __init__(self, cin, cout, slope=None):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout),
                                nn.LeakyReLU(slope) if slope else nn.ReLU())

    def forward(self, x):
        return self.up(x)


class UNetDeepSup(nn.Module):
    def __init__(self, width=64, cin=1, cout=1, slope=None):
        super().__init__()
        f = [width * m for m in (1, 2, 4, 8, 16)]
        self.pool = nn.MaxPool3d(2, 2)
        self.Conv1, self.Conv2 = ConvBlock(cin, f[0], slope), ConvBlock(f[0], f[1], slope)
        self.Conv3, self.Conv4 = ConvBlock(f[1], f[2], slope), ConvBlock(f[2], f[3], slope)
        self.Conv5 = ConvBlock(f[3], f[4], slope)
        self.Up5, self.Up_conv5 = UpConv(f[4], f[3], slope), ConvBlock(f[4], f[3], slope)
        self.Up4, self.Up_conv4 = UpConv(f[3], f[2], slope), ConvBlock(f[3], f[2], slope)
        self.Up3, self.Up_conv3 = UpConv(f[2], f[1], slope), ConvBlock(f[2], f[1], slope)
        self.Up2, self.Up_conv2 = UpConv(f[1], f[0], slope), ConvBlock(f[1], f[0], slope)
        self.Conv_d3, self.Conv_d4 = ConvBlock(f[1], cout, slope), ConvBlock(f[2], cout, slope)
        self.Conv = nn.Conv3d(f[0], cout, 1)

    def forward(self, x):
        e1 = self.Conv1(x)
        e2 = self.Conv2(self.pool(e1))
        e3 = self.Conv3(self.pool(e2))
        e4 = self.Conv4(self.pool(e3))
        e5 = self.Conv5(self.pool(e4))
        d5 = self.Up_conv5(torch.cat((e4, self.Up5(e5)), dim=1))
        d4 = self.Up_conv4(torch.cat((e3, self.Up4(d5)), dim=1))
        d4_out = self.Conv_d4(d4)
        d3 = self.Up_conv3(torch.cat((e2, self.Up3(d4)), dim=1))
        d3_out = self.Conv_d3(d3)
        d2 = self.Up_conv2(torch.cat((e1, self.Up2(d3)), dim=1))
        return [self.Conv(d2), d3_out, d4_out]


class MainOutput(nn.Module):
    """``net``'s first (main) output only: what hook-based libraries need of a deep-supervision
    network that returns a list."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]
