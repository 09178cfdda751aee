"""UDVD-like blind-spot multi-frame denoiser (Laine et al. 2019; Sheth et al. ICCV 2021).

Input: ``n_frames`` consecutive noisy frames; output: the middle frame, predicted WITHOUT
seeing the middle frame's own pixel, so the network can be trained against the noisy middle
frame (noise independent between pixels and frames) and still learns the clean signal.

Construction
------------
* A causal "upward" U-Net: every 3x3 convolution is preceded by a one-row shift down, and
  every 2x pooling by another, so output row ``i`` depends only on input rows ``<= i``;
  a final one-row shift makes it strictly ``< i``.
* It is applied to the 4 rotations of the frame stack (shared weights) and rotated back:
  the union of the 4 half-planes is every pixel except the centre, in every frame.
* The other frames (not the middle one) also go through an ordinary U-Net, so their centre
  pixels are seen (their noise is independent of the middle frame's).
* 1x1 convolutions merge the 5 feature maps: no spatial mixing after the blind spot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from etem.models.unet import UNet


def shift_down(x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Shift the rows of (N, C, H, W) down by ``n`` (zeros enter at the top)."""
    return F.pad(x, (0, 0, n, 0))[:, :, :-n, :]


class ShiftConv2d(nn.Conv2d):
    """3x3 convolution whose output row ``i`` sees input rows ``i-2 .. i`` only."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(shift_down(x, 1))


def _shift_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        ShiftConv2d(c_in, c_out), nn.LeakyReLU(0.1, inplace=True),
        ShiftConv2d(c_out, c_out), nn.LeakyReLU(0.1, inplace=True),
    )


class UpwardUNet(nn.Module):
    """U-Net whose output row ``i`` depends only on input rows strictly above ``i``."""

    def __init__(self, in_channels: int, depth: int, base_channels: int) -> None:
        super().__init__()
        self.depth = depth
        ch = [base_channels * 2**d for d in range(depth)]
        self.enc = nn.ModuleList()
        c_prev = in_channels
        for c in ch:
            self.enc.append(_shift_block(c_prev, c))
            c_prev = c
        self.dec = nn.ModuleList(
            _shift_block(ch[d + 1] + ch[d], ch[d]) for d in reversed(range(depth - 1))
        )
        self.out_channels = ch[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < self.depth - 1:
                skips.append(x)
                # shift before pooling: coarse row r covers fine rows 2r-1, 2r (never 2r+1)
                x = F.max_pool2d(shift_down(x, 1), 2)
        for dec in self.dec:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return shift_down(x, 1)


class BlindSpotDenoiser(nn.Module):
    """(N, n_frames, H, W) normalised frames -> (N, 1, H, W) middle frame, centre pixel blind."""

    def __init__(self, n_frames: int = 5, depth: int = 3, base_channels: int = 32) -> None:
        super().__init__()
        if n_frames % 2 == 0 or n_frames < 3:
            raise ValueError("n_frames must be odd and >= 3")
        self.n_frames = n_frames
        self.in_channels = n_frames
        self.blind = UpwardUNet(n_frames, depth, base_channels)
        self.others = UNet(n_frames - 1, base_channels, depth, base_channels)
        c = base_channels
        self.merge = nn.Sequential(
            nn.Conv2d(5 * c, 2 * c, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(2 * c, c, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c, 1, 1),
        )
        self.multiple = 2 ** (depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.n_frames // 2
        branches = [
            torch.rot90(self.blind(torch.rot90(x, k, dims=(2, 3))), -k, dims=(2, 3))
            for k in range(4)
        ]
        others = torch.cat([x[:, :mid], x[:, mid + 1 :]], dim=1)
        branches.append(self.others(others))
        return self.merge(torch.cat(branches, dim=1))
