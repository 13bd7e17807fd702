"""GMMN on auto-encoder codes (GMMN+AE, Li, Swersky & Zemel 2015): method ``gmmn-ae``.

Two phases share one step counter (``run.steps`` = ``ae_steps`` + GMMN steps; both are functions of ``step``, so
``--resume`` is exact wherever it stops):

1. steps ``0 .. ae_steps-1`` train an auto-encoder. Official MNIST layout: encoder ``D -> 1024 -> 32`` and decoder
   ``32 -> 1024 -> D``, all sigmoid layers, dropout 0.2 on the input and 0.5 on the hidden layer of the encoder,
   Bernoulli cross-entropy on ``[0, 1]`` pixels (squared error for 2-D points), SGD lr 0.1 with momentum 0 -> 0.5
   (step 50) -> 0.9 (step 200), batch 100, 3,000 steps. The official greedy layer-wise pre-training is not done:
   the stack is trained end to end from the start (its fine-tuning schedule).
2. the remaining steps train a GMMN (``10 -> 64 -> 256 -> 256 -> 1024 -> 32``, sigmoid output) to match the codes
   ``encoder(x)`` of data minibatches (dropout off) under a fixed Gaussian kernel (official MNIST: one kernel of
   variance 1); the decoder is not in the loss. Samples are ``decoder(g(z))``.

``autoencoder = "dcgan"`` swaps in a DCGAN encoder/decoder pair (images, no dropout).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gflowzoo.api import ConfigError, DCGANDecoder, DCGANEncoder, component, make_activation

from .gmmn import GMMN, GMMNConfig, family

__all__ = ["GMMNAE", "GMMNAEConfig", "DropoutMLP"]


class DropoutMLP(nn.Module):
    """An MLP whose dropout masks come from a given ``torch.Generator`` (so training is reproducible and resumable
    without the global RNG). ``[N, in_dim] -> [N, out_dim]``; ``dropout[i]`` applies to the input of layer ``i``
    (missing entries = 0); every layer is ``Linear -> activation``, the last one ``Linear -> out_activation``."""

    def __init__(
        self, dims: list[int], activation: str, out_activation: str, dropout: list[float] | None = None
    ) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.acts = nn.ModuleList(
            make_activation(activation if i < len(dims) - 2 else out_activation) for i in range(len(dims) - 1)
        )
        self.dropout = [float(p) for p in (dropout or [])]
        if any(not 0.0 <= p < 1.0 for p in self.dropout):
            raise ConfigError(f"dropout rates must be in [0, 1); got {self.dropout}.")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` ``[N, ...]`` (flattened). Dropout is applied only in training mode and with a ``generator``."""
        h = x.reshape(len(x), -1)
        for i, (lin, act) in enumerate(zip(self.linears, self.acts)):
            p = self.dropout[i] if i < len(self.dropout) else 0.0
            if p > 0 and self.training and generator is not None:
                keep = (torch.rand(h.shape, generator=generator) >= p).to(h.device, h.dtype)
                h = h * keep / (1 - p)
            h = act(lin(h))
        return h


@dataclasses.dataclass
class GMMNAEConfig(GMMNConfig):
    """Options of ``gmmn-ae`` (defaults: the official MNIST ``mnistcode`` settings)."""

    #: The GMMN on codes: one Gaussian of variance 1 (official MNIST).
    kernel: Any = component("kernel", {"name": "rbf", "sigmas": [1.0], "convention": "variance"})
    #: Auto-encoder phase length (the first steps of the run).
    ae_steps: int = 3000
    #: ``mlp`` (official) or ``dcgan`` (images).
    autoencoder: Literal["mlp", "dcgan"] = "mlp"
    code_dim: int = 32
    ae_hidden: list[int] = dataclasses.field(default_factory=lambda: [1024])
    ae_activation: str = "sigmoid"
    #: Dropout on the input of each encoder layer (MLP auto-encoder only).
    ae_dropout: list[float] = dataclasses.field(default_factory=lambda: [0.2, 0.5])
    ae_batch_size: int = 100
    ae_optimizer: Literal["sgd", "adam"] = "sgd"
    ae_lr: float = 0.1
    #: SGD momentum schedule of the auto-encoder: ``ae_momentum[i]`` from AE step ``ae_momentum_steps[i]`` on.
    ae_momentum: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.5, 0.9])
    ae_momentum_steps: list[int] = dataclasses.field(default_factory=lambda: [0, 50, 200])
    #: Width of the DCGAN auto-encoder.
    ae_width: int = 64

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        if self.ae_steps < 0 or self.code_dim < 1 or self.ae_batch_size < 1 or not self.ae_lr > 0:
            raise ConfigError("ae_steps must be >= 0 and code_dim, ae_batch_size, ae_lr > 0.")
        if len(self.ae_momentum) != len(self.ae_momentum_steps):
            raise ConfigError("ae_momentum and ae_momentum_steps must have the same length.")
        super().validate()


class GMMNAE(GMMN):
    """GMMN+AE (Li, Swersky & Zemel 2015): the first ``ae_steps`` steps train an auto-encoder (official MNIST:
    D-1024-32 sigmoid layers, dropout, cross-entropy); the rest train a GMMN on its codes (one Gaussian of variance
    1). Samples are decoded codes. Details: docs/baselines.md."""

    Config = GMMNAEConfig

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """``paper``: official MNIST settings (3k AE + 40k GMMN steps); ``cpu-quick``: 2,000 Adam AE steps, batch
        256 (digits: Adam for the GMMN phase too).
        Toys: a small tanh auto-encoder (2 -> 64 -> 64 -> 2 codes) with Adam, squared error."""
        fam = family(dataset)
        if fam is None:
            return {}
        if fam == "toy":
            return {
                "nz": 2, "hidden": [128, 128, 128], "batch_size": 256, "optimizer": "adam", "lr": 3e-3,
                "lr_drop_step": 0, "code_dim": 2, "ae_hidden": [64, 64], "ae_activation": "tanh",
                "ae_dropout": [], "ae_optimizer": "adam", "ae_lr": 3e-3, "ae_steps": 300, "ae_batch_size": 256,
                "kernel": {"name": "rbf", "sigmas": [0.0003, 0.003, 0.03, 0.3, 3.0], "convention": "variance"},
            }
        if variant == "paper":
            return {"run": {"steps": 43_000}}
        # 300 steps of the official SGD (lr 0.1) leave the auto-encoder untrained on digits (loss 0.427 -> 0.427;
        # every code alike, samples one mean image); Adam 1e-3 for 2,000 steps trains it (docs/baselines.md).
        out: dict[str, Any] = {
            "ae_steps": 2000, "ae_optimizer": "adam", "ae_lr": 1e-3, "batch_size": 256,
            "code_dim": 16 if fam == "digits" else 32,
        }
        if fam == "digits":
            out.update(optimizer="adam", lr=1e-3, lr_drop_step=0)  # as gmmn's digits preset
        return out

    def __init__(self, config: GMMNAEConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        c = config
        super().__init__(config, data, device, components=components)
        d = math.prod(self.shape)
        out_act = "sigmoid" if self.kind == "image" else "none"
        if c.autoencoder == "dcgan":
            self.encoder = nn.Sequential(DCGANEncoder(self.shape, c.code_dim, ndf=c.ae_width), nn.Sigmoid())
            self.decoder = DCGANDecoder(c.code_dim, self.shape, ngf=c.ae_width, out_activation=out_act)
        else:
            code_act = "sigmoid" if c.ae_activation == "sigmoid" else c.ae_activation
            self.encoder = DropoutMLP([d, *c.ae_hidden, c.code_dim], c.ae_activation, code_act, c.ae_dropout)
            self.decoder = DropoutMLP([c.code_dim, *reversed(c.ae_hidden), d], c.ae_activation, out_act)
        self.encoder.to(self.device)
        self.decoder.to(self.device)
        ae_params = [*self.encoder.parameters(), *self.decoder.parameters()]
        if c.ae_optimizer == "sgd":
            self.opt_ae = torch.optim.SGD(ae_params, lr=c.ae_lr, momentum=c.ae_momentum[0] if c.ae_momentum else 0.0)
        else:
            self.opt_ae = torch.optim.Adam(ae_params, lr=c.ae_lr)

    # -- GMMN hooks ------------------------------------------------------------------------------------------------
    def output_shape(self) -> tuple[int, ...]:
        """The generator makes codes ``[code_dim]``."""
        return (self.config.code_dim,)

    def build_generator(self) -> nn.Module:
        """An MLP onto codes, with the encoder's output activation (sigmoid for the official auto-encoder)."""
        from gflowzoo.api import MLP

        c = self.config
        if c.generator == "dcgan":
            raise ConfigError("gmmn-ae generates codes: use generator = \"mlp\" (autoencoder = \"dcgan\" sets the AE).")
        out_act = "sigmoid" if (c.autoencoder == "dcgan" or c.ae_activation == "sigmoid") else c.ae_activation
        return MLP(c.nz, c.code_dim, c.hidden, c.activation, out_act)

    def _encode(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if isinstance(self.encoder, DropoutMLP):
            return self.encoder(self.data_features(x), generator)
        return self.encoder(x)

    def _decode(self, code: Tensor) -> Tensor:
        out = self.decoder(code)
        return out.reshape(len(code), *self.shape)

    def target_features(self, generator: torch.Generator) -> Tensor:
        """Codes of one data minibatch, dropout off."""
        x = self.real_batch(generator, self.config.batch_size)
        self.encoder.eval()
        try:
            with torch.no_grad():
                return self._encode(x)
        finally:
            self.encoder.train()

    @torch.no_grad()
    def decode(self, out: Tensor) -> Tensor:
        """Codes -> samples in model units."""
        return self.to_samples(self._decode(out))

    # -- training --------------------------------------------------------------------------------------------------
    def ae_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One auto-encoder step (cross-entropy for images: per-pixel mean; squared error for points)."""
        c = self.config
        if c.ae_optimizer == "sgd" and c.ae_momentum:
            momentum = c.ae_momentum[0]
            for value, start in zip(c.ae_momentum, c.ae_momentum_steps):
                if step >= start:
                    momentum = value
            for group in self.opt_ae.param_groups:
                group["momentum"] = momentum
        x = self.real_batch(generator, c.ae_batch_size)
        recon = self._decode(self._encode(x, generator))
        if self.kind == "image":
            loss = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), (x + 1) / 2)
        else:
            loss = F.mse_loss(recon, x)
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        return {"loss": float(loss.detach()), "phase": 0.0}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """An auto-encoder step while ``step < ae_steps``, else a GMMN step on codes. Logs ``loss`` (the phase's
        loss), ``phase`` (0 = auto-encoder, 1 = GMMN) and, in phase 1, ``mmd2`` and ``lr``."""
        if step < self.config.ae_steps:
            return self.ae_step(step, generator)
        return {**self.gmmn_step(step - self.config.ae_steps, generator), "phase": 1.0}

    # -- state -----------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Generator, its optimiser, encoder, decoder and the auto-encoder's optimiser."""
        return {**super().stateful(), "encoder": self.encoder, "decoder": self.decoder, "opt_ae": self.opt_ae}
