"""Speed options of a run: bfloat16 autocast (``run.amp = "bf16"``) and ``torch.compile`` (``run.compile = true``).

Both are applied in one place, :func:`apply`, when :func:`gflowzoo.session.build_method` builds a method, so training,
sampling, evaluation and comparisons all see them:

* ``amp = "bf16"``: the method's ``train_step``, ``sample`` and ``finalize`` run inside
  ``torch.autocast(device_type, dtype=torch.bfloat16)``. Matrix products and convolutions of the networks run in
  bfloat16; parameters, optimiser states and gradients stay float32 (bfloat16 has float32's range, so no loss
  scaling is needed). Kernel and divergence code (:mod:`gflowzoo.kernels`, :mod:`gflowzoo.divergences`) leaves
  autocast and computes in float32. Works on CPUs and on GPUs with bfloat16 support (compute capability >= 8.0).
* ``compile = true``: every network the method holds (its :class:`torch.nn.Module` attributes) is compiled in place
  with ``module.compile(backend=run.compile_backend)`` (parameter names and checkpoints are unchanged). The first
  steps are slow (compilation). The ``inductor`` backend needs a C compiler, also on CPUs. Compiled graphs cannot
  be differentiated twice, so methods with a gradient penalty (``dmmd``, ``mmdgan-gp``) fail in their first step;
  that failure is reported as a :class:`~gflowzoo.errors.UserError` naming the option.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .errors import UserError

__all__ = ["AMP_MODES", "COMPILE_BACKENDS", "apply", "autocast_context", "check", "compile_modules"]

AMP_MODES = ("none", "bf16")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
#: The method entry points that run under autocast (and whose first failure under compile is explained).
WRAPPED = ("train_step", "sample", "finalize")


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def check(amp: str, compile: bool, backend: str, device: str | torch.device) -> None:
    """Raise a :class:`UserError` when the options cannot work on ``device``."""
    if amp not in AMP_MODES:
        fp16 = amp in ("fp16", "float16")
        hint = " float16 needs loss scaling, which gflowzoo does not do; use bf16." if fp16 else ""
        raise UserError(f"run.amp must be one of {', '.join(AMP_MODES)}; got {amp!r}.{hint}")
    dtype = _device_type(device)
    if amp == "bf16":
        if dtype == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("run.amp = \"bf16\": this GPU does not support bfloat16 (needs compute capability >= 8.0). "
                            "Use run.amp = \"none\".")
        if dtype not in ("cpu", "cuda"):
            raise UserError(f"run.amp = \"bf16\" is supported on cpu and cuda devices, not {dtype}.")
    if not compile:
        return
    if backend not in COMPILE_BACKENDS:
        raise UserError(f"run.compile_backend must be one of {', '.join(COMPILE_BACKENDS)}; got {backend!r}.")
    if backend == "inductor" and not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
                                      or shutil.which("clang")):
        raise UserError("run.compile = true with the inductor backend needs a C compiler (cc, gcc or clang on the "
                        "PATH, or $CC). Install one, use run.compile_backend = \"aot_eager\", or run.compile = false.")


@contextlib.contextmanager
def autocast_context(device: str | torch.device, amp: str) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 on ``device`` for ``amp = "bf16"``; nothing for ``"none"``."""
    if amp == "none":
        yield
        return
    with torch.autocast(device_type=_device_type(device), dtype=torch.bfloat16):
        yield


def compile_modules(obj: Any, backend: str = "inductor") -> list[str]:
    """Compile, in place, every :class:`torch.nn.Module` attribute of ``obj`` (``module.compile``); returns their
    names. Containers (``ModuleDict``/``ModuleList``) are compiled as a whole only when they are called; their
    members are reached through the attribute that holds them."""
    names = []
    for name, value in vars(obj).items():
        if isinstance(value, nn.Module) and not isinstance(value, (nn.ModuleDict, nn.ModuleList)):
            value.compile(backend=backend)
            names.append(name)
    return names


def _wrap(fn: Callable[..., Any], device: str | torch.device, amp: str, compiled: bool,
          what: str) -> Callable[..., Any]:
    state = {"first": True}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with autocast_context(device, amp):
                return fn(*args, **kwargs)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if compiled and state["first"]:
                raise UserError(
                    f"run.compile = true: the compiled {what} failed in its first call ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}). Methods whose step differentiates twice (a "
                    "gradient penalty) cannot run compiled; set run.compile = false."
                ) from exc
            raise
        finally:
            state["first"] = False

    wrapper.__gflowzoo_accel__ = True  # type: ignore[attr-defined]
    return wrapper


def apply(method: Any, amp: str = "none", compile: bool = False, backend: str = "inductor",
          device: str | torch.device | None = None) -> Any:
    """Apply the speed options to a freshly built ``method`` (in place; returns it). ``device``: the method's
    device (default ``method.device``)."""
    device = device if device is not None else getattr(method, "device", "cpu")
    check(amp, compile, backend, device)
    if amp == "none" and not compile:
        return method
    if compile:
        compile_modules(method, backend)
    for name in WRAPPED:
        fn = getattr(method, name, None)
        if fn is not None and not getattr(fn, "__gflowzoo_accel__", False):
            setattr(method, name, _wrap(fn, device, amp, compile, f"{type(method).__name__}.{name}"))
    return method
