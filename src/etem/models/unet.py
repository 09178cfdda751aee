"""U-Net family (Ronneberger et al.): the supervised denoiser and the occupancy segmenter.

``depth`` scales with ``base_channels * 2**d`` channels at scale ``d``; two 3x3 convolutions
+ ReLU per scale, max-pool down, transposed-convolution up, skip connections. With
``bias=False`` and no normalisation layers the network is positively homogeneous
(bias-free, Mohan et al. 2020): scaling the input scales the output. Input height and width
must be multiples of ``2**(depth-1)`` (:mod:`etem.models.inference` pads).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int, bias: bool = True) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Plain U-Net: (N, in_channels, H, W) -> (N, out_channels, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, depth: int = 4, base_channels: int = 32,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.depth = depth
        ch = [base_channels * 2**d for d in range(depth)]
        self.enc = nn.ModuleList()
        c_prev = in_channels
        for c in ch:
            self.enc.append(conv_block(c_prev, c, bias))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for d in reversed(range(depth - 1)):
            self.up.append(nn.ConvTranspose2d(ch[d + 1], ch[d], 2, stride=2, bias=bias))
            self.dec.append(conv_block(2 * ch[d], ch[d], bias))
        self.head = nn.Conv2d(ch[0], out_channels, 1, bias=bias)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this [px]."""
        return 2 ** (self.depth - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder features (N, base_channels, H, W)."""
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Denoiser(nn.Module):
    """Supervised denoiser: normalised noisy frame (vacuum = 1) -> clean intensity.

    Input channels (:func:`etem.data.inputs.network_input`): the prefilter's estimate of the
    whole frame (``prefilter`` not 'none'), the normalised counts, the noise level
    1/sqrt(dose [e/px]) when dose-conditioned. With ``residual`` the U-Net predicts the
    correction to the first channel (the prefilter's estimate, else the noisy input).
    """

    def __init__(
        self, depth: int = 4, base_channels: int = 32, bias_free: bool = False,
        dose_conditioned: bool = False, residual: bool = True, prefilter: str = "none",
    ) -> None:
        super().__init__()
        self.dose_conditioned = dose_conditioned
        self.prefilter = prefilter
        self.in_channels = 1 + int(dose_conditioned) + int(prefilter != "none")
        self.residual = residual
        self.unet = UNet(self.in_channels, 1, depth, base_channels, bias=not bias_free)
        self.multiple = self.unet.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.unet(x)
        return x[:, :1] + out if self.residual else out


class Segmenter(nn.Module):
    """Occupancy segmenter: normalised noisy frame -> class logits + ordinal occupancy logits.

    Output channels: ``n_classes`` class logits, then ``max_occupancy`` cumulative logits
    P(n > k), k = 0..max_occupancy-1, for the cation and then the anion column occupancy.
    """

    def __init__(
        self, n_classes: int, max_occupancy: int, depth: int = 4, base_channels: int = 32,
        bias_free: bool = False, dose_conditioned: bool = False,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.max_occupancy = max_occupancy
        self.dose_conditioned = dose_conditioned
        self.in_channels = 2 if dose_conditioned else 1
        self.unet = UNet(
            self.in_channels, n_classes + 2 * max_occupancy, depth, base_channels,
            bias=not bias_free,
        )
        self.multiple = self.unet.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)

    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split the output into ``class`` logits and ``cation`` / ``anion`` ordinal logits."""
        c, m = self.n_classes, self.max_occupancy
        return {"class": out[:, :c], "cation": out[:, c : c + m], "anion": out[:, c + m :]}
