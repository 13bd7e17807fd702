"""A base for the methods whose samples are one pass of a generator network ``G(z)`` over latent codes (GMMN,
GMMN-AE, MMD GAN, MMD GAN-GP): the latent draw, the training-data stream, chunked sampling in eval mode and the
checkpoint state as a table of stateful objects. Plugins reach it as ``gflowzoo.api.GeneratorMethod``.

A subclass builds its generator as ``self.G`` (``[N, nz] -> [N, *out]``), implements :meth:`Method.train_step`,
and lists what a checkpoint holds in :meth:`GeneratorMethod.stateful`. Its ``Config`` has the fields ``nz``,
``latent`` (``normal`` or ``uniform``), ``batch_size`` and ``sample_chunk``, and a ``validate()`` method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .interfaces import Method
from .nets import sample_latent

__all__ = ["GeneratorMethod"]


class GeneratorMethod(Method):
    """A method that samples with a generator ``self.G`` on latent codes (see the module docstring).

    All randomness of a training step comes from the step's CPU ``generator``: real minibatches are drawn with
    replacement (``Dataset.sample``), latents with :func:`gflowzoo.nets.sample_latent`; sampling draws its latents
    from the generator it is given, chunk after chunk, so a seed gives the same samples."""

    #: the generator network, built by the subclass
    G: nn.Module

    def __init__(self, config: Any, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        config.validate()
        from .session import given_components

        components = given_components(config, components)
        #: the built components of the config (:func:`gflowzoo.api.build_components`), by field path
        self.components = components
        self.shape = tuple(int(s) for s in data.shape)
        self.kind = data.kind
        self._train_set: Any = None

    # -- data --------------------------------------------------------------------------------------------------------
    def latent(self, generator: torch.Generator, n: int | None = None) -> Tensor:
        """``n`` (default ``batch_size``) latent codes ``[n, nz]`` on the method's device."""
        c = self.config
        return sample_latent(n or c.batch_size, c.nz, generator, self.device, c.latent)

    def real_batch(self, generator: torch.Generator, n: int | None = None) -> Tensor:
        """``n`` (default ``batch_size``) training samples ``[n, *S]`` (drawn with replacement) on the device."""
        if self._train_set is None:
            self._train_set = self.data.train
        return self._train_set.sample(n or self.config.batch_size, generator).to(self.device)

    # -- sampling ----------------------------------------------------------------------------------------------------
    def generate(self, z: Tensor) -> Tensor:
        """Samples ``[N, *S]`` in model units from latent codes ``z`` ``[N, nz]`` (the generator; a subclass may
        decode its output further)."""
        return self.G(z)

    def sampling_modules(self) -> list[nn.Module]:
        """The networks :meth:`sample` runs in eval mode: every :class:`torch.nn.Module` attribute by default (a
        subclass whose sampling uses the generator alone may return ``[self.G]``)."""
        return [m for m in vars(self).values() if isinstance(m, nn.Module)]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``[n, *S]`` on the CPU, ``sample_chunk`` per generator pass. The networks of
        :meth:`sampling_modules` run in eval mode (BatchNorm uses its running statistics) and get their mode back,
        so sampling changes no state."""
        modules = self.sampling_modules()
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        chunk = self.config.sample_chunk
        try:
            out = [self.generate(self.latent(generator, min(chunk, n - start))).float().cpu().contiguous()
                   for start in range(0, n, chunk)]
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return torch.cat(out).reshape(-1, *self.shape) if out else torch.zeros(0, *self.shape)

    def sampling_info(self) -> dict[str, Any]:
        """One generator pass per sample."""
        return {"nfe": 1, "latent": f"{self.config.latent}^{self.config.nz}"}

    # -- state -------------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """The objects whose ``state_dict`` makes up a checkpoint, by key, in load order (modules before their
        optimisers). Subclasses extend it with their networks, optimisers and schedules."""
        return {"generator": self.G}

    def state_dict(self) -> dict[str, Any]:
        """``{key: obj.state_dict()}`` over :meth:`stateful` (tensors and plain data only)."""
        return {key: obj.state_dict() for key, obj in self.stateful().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; a missing part is a clear error."""
        parts = self.stateful()
        missing = [key for key in parts if key not in state]
        if missing:
            raise CheckpointError(f"The checkpoint lacks {', '.join(missing)} (was it written with another config?).")
        for key, obj in parts.items():
            obj.load_state_dict(state[key])
