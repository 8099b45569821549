"""The actor and the critic: small tanh MLPs of ``(t, x)`` in torch.

Inputs are scaled to ``[-1, 1]`` (time ``2t/T - 1``; position ``2(x - xmin)/L - 1``, or
``(sin, cos)`` of the angle on a periodic domain, so that the networks are periodic in
``x``); outputs are scaled by the problem's natural sizes (a velocity ``L/T``, a value
scale fixed from the first critic targets), so that the default learning rates fit
any domain and horizon. Weights are float32: the learned functions carry a sampling
error of order 1e-3 at best, far above float32's 6e-8, and float32 matrix products cost
half of float64's on the CPU (1.2 ms against 2.5 ms per Adam step of a 2x64 network on
1,024 samples, measured on the 2-core development machine). Agents, densities and the
PDE side stay float64; values cross over at the network's input and output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

DTYPE = torch.float32


class MLP(torch.nn.Module):
    """``tanh`` multilayer perceptron, initialised from a given ``torch.Generator``.

    Glorot-uniform weights and zero biases; the last layer's weights are multiplied by
    ``last_scale`` (small for the actor, so that training starts from ``α ≈ 0``).
    """

    def __init__(
        self,
        inputs: int,
        hidden: Sequence[int],
        generator: torch.Generator,
        device: Any,
        last_scale: float = 1.0,
    ) -> None:
        super().__init__()
        sizes = [inputs, *hidden, 1]
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layer = torch.nn.Linear(fan_in, fan_out, dtype=DTYPE, device=device)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            if i == len(sizes) - 2:
                bound *= last_scale
            with torch.no_grad():
                # Drawn on the CPU generator, then moved: the same seed gives the same
                # initial networks on every device.
                weights = torch.empty((fan_out, fan_in), dtype=DTYPE)
                weights.uniform_(-bound, bound, generator=generator)
                layer.weight.copy_(weights)
                layer.bias.zero_()
            layers.append(layer)
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = features
        for layer in self.layers[:-1]:
            h = _tanh(layer(h))
        return self.layers[-1](h)[..., 0]


def _tanh(z: torch.Tensor) -> torch.Tensor:
    """``tanh(z)`` as ``2 sigmoid(2z) - 1``: the same function, but torch's CPU ``tanh``
    is not vectorised in the builds measured (338 µs for 2048 x 64 float32 values
    against 57 µs for ``sigmoid``, torch 2.13 on the 2-core development machine), and it
    was the largest single cost of training."""
    return 2.0 * torch.sigmoid(2.0 * z) - 1.0


class Features:
    """``(t, x) -> `` network inputs in ``[-1, 1]``, float32 (see the module notes)."""

    def __init__(self, T: float, xmin: float, length: float, periodic: bool) -> None:
        self.T, self.xmin, self.length, self.periodic = T, xmin, length, periodic

    @property
    def size(self) -> int:
        return 3 if self.periodic else 2

    def __call__(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.to(DTYPE)
        tau = torch.as_tensor(t, dtype=DTYPE, device=x.device)
        tau, x = torch.broadcast_tensors(2.0 * tau / self.T - 1.0, x)
        s = (x - self.xmin) / self.length
        if self.periodic:
            angle = 2.0 * math.pi * s
            return torch.stack([tau, torch.sin(angle), torch.cos(angle)], dim=-1)
        return torch.stack([tau, 2.0 * s - 1.0], dim=-1)


class GaussianPolicy(torch.nn.Module):
    r"""The actor: ``α ~ N(μ_θ(t, x), s²)`` with a learned, state-independent ``log s``.

    ``μ_θ = scale · MLP(features)`` with ``scale = L / T`` (crossing the domain once
    over the horizon). The standard deviation explores; it is trained by the same
    pathwise gradient as the mean, which shrinks it (noise in the action only costs
    ``λ s² / 2``), down to ``min_std``.
    """

    def __init__(
        self,
        features: Features,
        hidden: Sequence[int],
        generator: torch.Generator,
        device: Any,
        scale: float,
        initial_std: float,
        min_std: float,
    ) -> None:
        super().__init__()
        self.features = features
        self.net = MLP(features.size, hidden, generator, device, last_scale=0.01)
        self.scale = float(scale)
        self.log_std = torch.nn.Parameter(
            torch.tensor(math.log(initial_std), dtype=DTYPE, device=device)
        )
        self.min_log_std = math.log(min_std)

    def mean(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        """``μ_θ(t, x)`` in the dtype of ``x``."""
        return (self.scale * self.net(self.features(t, x))).to(x.dtype)

    def std(self) -> torch.Tensor:
        return torch.exp(torch.clamp(self.log_std, min=self.min_log_std))

    def sample(self, t: Any, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``μ + s ε`` for standard normal ``noise`` (reparameterised: differentiable)."""
        return self.mean(t, x) + self.std().to(x.dtype) * noise


class Critic(torch.nn.Module):
    """The critic: the cost-to-go ``u_φ(t, x) = shift + scale · MLP(features)``.

    It estimates the PDE's ``u`` (minus the expected return). ``shift`` and ``scale``
    are buffers, set from the first targets it is fitted to (:meth:`set_scale`).
    """

    def __init__(
        self, features: Features, hidden: Sequence[int], generator: torch.Generator, device: Any
    ) -> None:
        super().__init__()
        self.features = features
        self.net = MLP(features.size, hidden, generator, device)
        self.register_buffer("shift", torch.zeros((), dtype=torch.float64, device=device))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64, device=device))
        self.register_buffer("scaled", torch.zeros((), dtype=torch.bool, device=device))

    def set_scale(self, targets: torch.Tensor) -> None:
        """Fix the output's shift and scale from the first targets (mean and spread)."""
        if bool(self.scaled):
            return
        with torch.no_grad():
            self.shift.copy_(targets.mean())
            self.scale.copy_(torch.clamp(targets.std(), min=1e-6))
            self.scaled.fill_(True)

    def forward(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        """``u_φ(t, x)`` in float64."""
        return self.shift + self.scale * self.net(self.features(t, x)).to(torch.float64)
