"""Post-training int8 dynamic quantisation of Linear layers, stored as plain tensors.

Weights are quantised once, symmetric per output channel; activations are quantised per row at
run time from their observed range (that is what "dynamic" means). Products of int8 values are
accumulated exactly in fp32 (|sum| < 2**24 for rows up to 1040 wide), so the numerics are those of
an int8 GEMM while the kernels stay portable. Only plain int8/fp32 tensors are stored: no
quantised-tensor types, which torch is deprecating.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

SCHEME = "int8-dynamic-per-channel"
_QMAX = 127.0


class Int8DynamicLinear(nn.Module):
    """A Linear layer with int8 weights and per-row int8 activation quantisation."""

    weight_int8: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8DynamicLinear:
        q = cls(linear.in_features, linear.out_features, linear.bias is not None)
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / _QMAX
        q.weight_int8.copy_(torch.round(w / scale[:, None]).clamp(-_QMAX, _QMAX).to(torch.int8))
        q.weight_scale.copy_(scale)
        if linear.bias is not None and q.bias is not None:
            q.bias.data.copy_(linear.bias.detach().float())
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x_scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / _QMAX
        x_q = torch.round(x / x_scale).clamp(-_QMAX, _QMAX)
        y = (x_q @ self.weight_int8.float().t()) * x_scale * self.weight_scale
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scheme={SCHEME}"


def quantize_int8(model: nn.Module, *, from_weights: bool = True) -> nn.Module:
    """A copy of ``model`` with every nn.Linear replaced by :class:`Int8DynamicLinear`.

    With ``from_weights=False`` the layers are empty shells for ``load_state_dict``.
    """
    out = copy.deepcopy(model)
    for name, child in list(out.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Linear):
                q = (
                    Int8DynamicLinear.from_linear(sub)
                    if from_weights
                    else Int8DynamicLinear(sub.in_features, sub.out_features, sub.bias is not None)
                )
                setattr(child, attr, q)
        del name
    return out.eval()
