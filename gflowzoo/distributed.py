"""Multi-process helpers (``torch.distributed``) for data-parallel training and sharded sampling.

Start several processes with ``torchrun --nproc-per-node N -m gflowzoo train ...``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`init` joins the process group (gloo for
CPU tensors, plus NCCL for CUDA tensors when CUDA is available; rank ``r`` of a node uses ``cuda:LOCAL_RANK``).
docs/distributed.md explains the design.

Every helper is a no-op (or the identity) in one process, so code calls them unconditionally. Nothing heavy is
imported at module level (torch loads inside the functions).

Collectives must be called by every rank in the same order. The helpers that take autograd into account
(:func:`gather_cat`, :func:`all_reduce_sum`) have backward passes that are collectives too: every rank must run the
same backward graph (the same code on the same shapes does).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import GflowzooError, UserError

__all__ = [
    "agree", "all_reduce_sum", "any_flags", "average_gradients", "barrier", "broadcast_object", "broadcast_state",
    "check_support", "gather_cat", "init", "is_main", "launched", "local_rank", "on_main", "quiet", "rank",
    "sample_shards", "session", "shard_seed", "shard_sizes", "shutdown", "sum_gradients", "to_cpu", "world",
]

#: Minutes a collective may wait for the other ranks before the process group gives up (``$GFLOWZOO_DIST_TIMEOUT``).
#: Rank 0 writes checkpoints, sample grids and in-training evaluations while the others wait at the next collective.
DEFAULT_TIMEOUT_MIN = 30.0

_created_here = False  # whether init() created the process group (then shutdown() destroys it)


# ---------------------------------------------------------------------------------------------------------------
# who am I
# ---------------------------------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise UserError(f"${name} must be an integer; got {raw!r}.") from None


def launched() -> bool:
    """Whether this process was started as one of several by torchrun (``$WORLD_SIZE > 1``)."""
    return _env_int("WORLD_SIZE", 1) > 1


def _group() -> Any:
    """``torch.distributed`` when a process group is active, else None (without importing torch when it has not
    been imported: then no group can exist)."""
    import sys

    if "torch.distributed" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> int:
    """Number of processes in the group (1 without one)."""
    dist = _group()
    return dist.get_world_size() if dist is not None else 1


def rank() -> int:
    """This process's rank: from the process group, else ``$RANK`` under torchrun, else 0."""
    dist = _group()
    if dist is not None:
        return dist.get_rank()
    return _env_int("RANK", 0) if launched() else 0


def local_rank() -> int:
    """This process's rank on its node (``$LOCAL_RANK``; 0 in one process): its GPU index."""
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def is_main() -> bool:
    """True on rank 0 (and in one process): the rank that writes files and prints."""
    return rank() == 0


# ---------------------------------------------------------------------------------------------------------------
# set-up
# ---------------------------------------------------------------------------------------------------------------


def _timeout() -> Any:
    import datetime

    raw = os.environ.get("GFLOWZOO_DIST_TIMEOUT", "").strip()
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MIN
    except ValueError:
        raise UserError(f"$GFLOWZOO_DIST_TIMEOUT must be a number of minutes; got {raw!r}.") from None
    if not minutes > 0:
        raise UserError(f"$GFLOWZOO_DIST_TIMEOUT must be positive; got {raw!r}.")
    return datetime.timedelta(minutes=minutes)


def init() -> bool:
    """Join the process group when started by torchrun (``$WORLD_SIZE > 1``); returns whether a group is active.

    Backends: ``gloo`` for CPU tensors and, when this process has a GPU (``LOCAL_RANK`` below the number of visible
    CUDA devices), ``nccl`` for CUDA tensors (one group serves both; objects travel through gloo). ``cuda`` (without
    an index) then means ``cuda:LOCAL_RANK`` in this process. Idempotent; a group created by someone else is used as
    is."""
    global _created_here
    if not launched():
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if not os.environ.get(key):
            raise UserError(
                f"${key} is not set: start multi-process runs with torchrun --nproc-per-node N -m gflowzoo."
            )
    backend = "gloo"
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend, timeout=_timeout())
    _created_here = True
    return True


def shutdown() -> None:
    """Leave the process group if :func:`init` created it."""
    global _created_here
    dist = _group()
    if dist is not None and _created_here:
        # every rank finishes its collectives before any tears the group down: destroying it while a peer still
        # talks has aborted a gloo process at exit ("terminate called without an active exception")
        try:
            if dist.get_backend() == "gloo":
                import datetime

                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
            else:
                dist.barrier()
        except Exception:  # a peer is gone: tear down anyway
            pass
        dist.destroy_process_group()
    _created_here = False


@contextlib.contextmanager
def session() -> Iterator[bool]:
    """``with session():`` joins the group under torchrun for the block (yields whether one is active) and leaves
    it afterwards if the block created it (a group that was already active stays)."""
    existed = _group() is not None
    active = init()
    try:
        yield active
    finally:
        if active and not existed:
            shutdown()


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    dist = _group()
    if dist is not None:
        dist.barrier()


# ---------------------------------------------------------------------------------------------------------------
# errors and agreement: a failure on one rank stops every rank (nobody waits forever in a collective)
# ---------------------------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> tuple[str, str, int]:
    return type(exc).__name__, str(exc), int(getattr(exc, "exit_code", 1))


def _rebuild(desc: tuple[str, str, int], origin: int) -> GflowzooError:
    """The error of rank ``origin`` re-raised here: the same class where it is a gflowzoo error class, printed
    only by rank 0 (``quiet`` elsewhere)."""
    from . import errors

    name, message, code = desc
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, GflowzooError)):
        cls = GflowzooError
    prefix = f"[rank {origin}] " if origin != 0 and not message.startswith("[rank") else ""
    exc = cls(prefix + message)
    exc.exit_code = code  # type: ignore[misc]
    exc.quiet = not is_main()  # type: ignore[attr-defined]
    return exc


def quiet(exc: BaseException) -> BaseException:
    """Mark ``exc`` as reported by rank 0: the CLI of other ranks exits with its code without printing it."""
    exc.quiet = not is_main()  # type: ignore[attr-defined]
    return exc


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and hand its (picklable) result to every rank; a :class:`GflowzooError` it raises
    is raised on every rank (printed by rank 0 only). In one process: ``fn()``."""
    dist = _group()
    if dist is None:
        return fn()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", to_cpu(fn()))
        except BaseException as exc:  # tell the others to stop too, then raise it here
            box[0] = ("error", _describe(exc) if isinstance(exc, GflowzooError) else (
                "GflowzooError", f"rank 0 failed: {type(exc).__name__}: {exc}", 1))
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise _rebuild(value, 0)
    return value


def agree(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on every rank; if it raises a :class:`GflowzooError` (or anything else) on any rank, every rank
    raises (the first failing rank's error, printed by rank 0 only). Returns this rank's result."""
    dist = _group()
    if dist is None:
        return fn()
    result, failure, own = None, None, None
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised below on every rank
        own = exc
        failure = _describe(exc) if isinstance(exc, GflowzooError) else (
            "GflowzooError", f"{type(exc).__name__}: {exc}", 1)
    outcomes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(outcomes, failure)
    failed = [(r, f) for r, f in enumerate(outcomes) if f is not None]
    if not failed:
        return result
    origin, desc = failed[0]
    if own is not None and origin == dist.get_rank():
        raise quiet(own) if dist.get_rank() != 0 else own
    raise _rebuild(desc, origin)


def any_flags(*flags: bool, main_only: Iterable[int] = ()) -> tuple[bool, ...]:
    """The logical OR of each flag over all ranks (one small all-reduce); flags whose index is in ``main_only``
    are taken from rank 0 alone (for decisions such as a wall-clock budget, which rank 0 measures). In one process:
    the flags as given."""
    dist = _group()
    if dist is None:
        return tuple(bool(f) for f in flags)
    import torch

    skip = set(main_only)
    values = [int(bool(f)) if (i not in skip or dist.get_rank() == 0) else 0 for i, f in enumerate(flags)]
    t = torch.tensor(values, dtype=torch.int32)  # CPU: the gloo backend carries it
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


# ---------------------------------------------------------------------------------------------------------------
# tensors (autograd-aware)
# ---------------------------------------------------------------------------------------------------------------


_OPS: dict[str, Any] = {}


def _ops() -> dict[str, Any]:
    """The two differentiable collectives, defined on first use (torch loads lazily). Their backward passes are
    collectives built from the same differentiable functions, so they can be differentiated again (a gradient
    penalty's ``create_graph=True`` may reach them)."""
    if _OPS:
        return _OPS
    import torch
    import torch.distributed as tdist

    class AllReduceSum(torch.autograd.Function):
        """``sum_r x_r`` on every rank; backward: the incoming gradients summed over ranks (the adjoint)."""

        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            out = x.clone(memory_format=torch.contiguous_format)
            tdist.all_reduce(out)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return AllReduceSum.apply(grad)

    class AllGather(torch.autograd.Function):
        """``[W, *x.shape]``: every rank's ``x``; backward: rank ``r`` receives the gradients of its slot from every
        rank's loss, summed (an all-reduce of the incoming gradient, slot ``r`` kept)."""

        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(tdist.get_world_size())]
            tdist.all_gather(parts, x.contiguous())
            return torch.stack(parts)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return AllReduceSum.apply(grad)[tdist.get_rank()]

    _OPS.update(all_reduce=AllReduceSum.apply, all_gather=AllGather.apply)
    return _OPS


def gather_cat(x: Any, dim: int = 0) -> Any:
    """The tensors ``x`` of all ranks (equal shapes), concatenated along ``dim`` in rank order. Differentiable: the
    gradient that the losses of **all** ranks send to rank ``r``'s part is summed into rank ``r``'s ``x`` (so the
    parameter gradients, summed over ranks with :func:`sum_gradients`, are those of the sum of all ranks' losses).
    One process: ``x``."""
    if _group() is None:
        return x
    import torch

    stacked = _ops()["all_gather"](x)  # [W, *x.shape]
    return torch.cat(list(stacked.unbind(0)), dim=dim)


def all_reduce_sum(x: Any) -> Any:
    """The sum of ``x`` over all ranks (a new tensor). Differentiable; the backward is an all-reduce sum too, so a
    loss term computed identically on every rank from the sum must be divided by the world size. One process:
    ``x``."""
    if _group() is None:
        return x
    return _ops()["all_reduce"](x)


def _grads(params: Iterable[Any]) -> list[Any]:
    return [p.grad for p in params if p.grad is not None]


def sum_gradients(params: Iterable[Any]) -> None:
    """Replace every ``p.grad`` by its sum over ranks (one flat all-reduce per device and dtype). Parameters with
    no gradient are skipped (the same ones on every rank: the same code ran). No-op in one process."""
    dist = _group()
    if dist is None:
        return
    import torch

    buckets: dict[tuple[Any, Any], list[Any]] = {}
    for g in _grads(params):
        buckets.setdefault((g.device, g.dtype), []).append(g)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


def average_gradients(params: Iterable[Any]) -> None:
    """Replace every ``p.grad`` by its mean over ranks (what ``DistributedDataParallel`` does). No-op in one
    process."""
    params = list(params)
    sum_gradients(params)
    w = world()
    if w > 1:
        for g in _grads(params):
            g.div_(w)


# ---------------------------------------------------------------------------------------------------------------
# objects and state
# ---------------------------------------------------------------------------------------------------------------


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to the CPU (for broadcasting)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable; tensors are moved to the CPU first) on every rank."""
    dist = _group()
    if dist is None:
        return obj
    box = [to_cpu(obj) if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_state(method: Any) -> None:
    """Make every rank's ``method`` identical to rank 0's (its ``state_dict`` is broadcast and loaded). No-op in
    one process."""
    if world() == 1:
        return
    state = broadcast_object(method.state_dict() if is_main() else None)
    if not is_main():
        method.load_state_dict(state)


def check_support(method: Any, name: str) -> None:
    """Refuse (:class:`UserError`) a trainable method without ``supports_distributed = True`` under world > 1."""
    if world() > 1 and getattr(method, "trainable", True) and not getattr(method, "supports_distributed", False):
        raise UserError(
            f"Method {name!r} does not support multi-process training (it does not declare supports_distributed). "
            "Run it in one process (without torchrun)."
        )


# ---------------------------------------------------------------------------------------------------------------
# sharded sampling
# ---------------------------------------------------------------------------------------------------------------


def shard_sizes(n: int, parts: int) -> list[int]:
    """``n`` items split over ``parts`` ranks as evenly as possible (the first ``n % parts`` get one more)."""
    base, extra = divmod(int(n), int(parts))
    return [base + (1 if r < extra else 0) for r in range(parts)]


def shard_seed(seed: int, rank_: int, world_: int) -> int:
    """The sampling seed of rank ``rank_``: ``seed`` itself in one process; otherwise a 63-bit hash of
    ``(seed, rank)`` (independent streams per rank, the same for every world size)."""
    if world_ == 1:
        return int(seed)
    digest = hashlib.sha256(f"gflowzoo-shard:{int(seed)}:{int(rank_)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_shards(method: Any, n: int, seed: int) -> Any:
    """Draw ``n`` samples with every rank generating its share (:func:`shard_sizes`, generator seeded with
    :func:`shard_seed`); rank 0 returns all ``[n, *S]`` on the CPU (rank order), the others None. One process:
    ``method.sample(n, Generator().manual_seed(seed))`` exactly."""
    import torch

    w, r = world(), rank()
    if w == 1:
        return method.sample(n, torch.Generator().manual_seed(int(seed)))
    sizes = shard_sizes(n, w)
    mine = sizes[r]
    x = method.sample(mine, torch.Generator().manual_seed(shard_seed(seed, r, w))) if mine else None
    # gloo carries CPU tensors of any size through the object channel; samples are modest ([n, *S] floats)
    dist = _group()
    parts: list[Any] = [None] * w if r == 0 else None  # type: ignore[assignment]
    dist.gather_object(None if x is None else x.detach().cpu(), parts, dst=0)
    if r != 0:
        return None
    return torch.cat([p for p in parts if p is not None])
