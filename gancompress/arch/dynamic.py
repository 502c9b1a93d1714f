"""Weight-sharing ("dynamic") layers for the once-for-all supernet of GAN Compression.

A dynamic layer holds the weights of the widest layer and, per forward pass, uses only the leading
slice: input channels from the incoming tensor, output channels from `active_out` (None: all).
So a sub-network is *the same* network as a plain student built at the smaller widths whose
weights are those leading slices (`arch.build.load_sliced` copies them), which is what makes
extraction exact.

`make_dynamic(module)` swaps, in place, every Conv2d / ConvTranspose2d / InstanceNorm2d /
BatchNorm2d of a plain student for its dynamic twin (parameters kept), so the supernet needs no
architecture code of its own: it is the widest student. Depthwise convolutions (groups equal to
channels) follow their input's width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicConv2d(nn.Conv2d):
    active_out: int | None = None

    def forward(self, x):
        cin = x.shape[1]
        if self.groups == 1:
            out = self.active_out or self.out_channels
            w = self.weight[:out, :cin]
            groups = 1
        elif self.groups == self.in_channels == self.out_channels:  # depthwise: width follows input
            out, groups = cin, cin
            w = self.weight[:cin]
        else:
            raise NotImplementedError("grouped convolutions other than depthwise are not dynamic")
        b = None if self.bias is None else self.bias[:out]
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, w, b, self.stride, 0, self.dilation, groups)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)


class DynamicConvTranspose2d(nn.ConvTranspose2d):
    active_out: int | None = None

    def forward(self, x):
        if self.groups != 1:
            raise NotImplementedError("grouped transposed convolutions are not dynamic")
        cin = x.shape[1]
        out = self.active_out or self.out_channels
        w = self.weight[:cin, :out]  # ConvTranspose2d weights are (in, out, k, k)
        b = None if self.bias is None else self.bias[:out]
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, 1, self.dilation)


class DynamicInstanceNorm2d(nn.InstanceNorm2d):
    def forward(self, x):
        c = x.shape[1]
        w = None if self.weight is None else self.weight[:c]
        b = None if self.bias is None else self.bias[:c]
        return F.instance_norm(x, None, None, w, b, True, 0.0, self.eps)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """Slices its affine parameters *and* running statistics; a sub-network's statistics are not
    the supernet's, so recalibrate (`recalibrate_batchnorm`) before scoring one."""

    def forward(self, x):
        c = x.shape[1]
        use_batch = self.training or self.running_mean is None
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if self.training and momentum is None:  # cumulative average, as nn.BatchNorm2d does
            momentum = 1.0 / float(self.num_batches_tracked)
        rm = None if self.running_mean is None else self.running_mean[:c]
        rv = None if self.running_var is None else self.running_var[:c]
        w = None if self.weight is None else self.weight[:c]
        b = None if self.bias is None else self.bias[:c]
        return F.batch_norm(x, rm, rv, w, b, use_batch, momentum or 0.0, self.eps)


_TWINS = {nn.Conv2d: DynamicConv2d, nn.ConvTranspose2d: DynamicConvTranspose2d,
          nn.InstanceNorm2d: DynamicInstanceNorm2d, nn.BatchNorm2d: DynamicBatchNorm2d}
DYNAMIC_TYPES = tuple(_TWINS.values())


def make_dynamic(module: nn.Module) -> nn.Module:
    """Turn every supported layer of `module` into its dynamic twin, in place (same parameters,
    same names, so state dicts stay interchangeable). Returns `module`."""
    for m in module.modules():
        twin = _TWINS.get(type(m))
        if twin is not None:
            m.__class__ = twin
    return module


def set_active_widths(module: nn.Module, widths: dict[str, int | None]) -> None:
    """Set each dynamic conv's output width by module name (names absent: full width)."""
    for name, m in module.named_modules():
        if isinstance(m, (DynamicConv2d, DynamicConvTranspose2d)):
            m.active_out = widths.get(name)


def out_widths(student: nn.Module) -> dict[str, int]:
    """Output channels of every conv of a plain student, by module name: the widths a dynamic
    network must use to compute exactly what this student computes."""
    return {name: m.out_channels for name, m in student.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches, forward=None) -> int:
    """Re-estimate BatchNorm running statistics for the active sub-network: reset them, then run
    `batches` in training mode with a cumulative average. Returns how many BN layers were reset
    (0: nothing to do, e.g. instance-norm or norm-free students)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = {m: (m.momentum, m.training) for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for x in batches:
        (forward or module)(x)
    for m, (mom, tr) in saved.items():
        m.momentum = mom
        m.train(tr)
    return len(bns)
