"""Contract test base for ``method`` components (:class:`gflowzoo.interfaces.Method`): :class:`MethodContract`, which
trains a few steps through the run service, and :func:`assert_states_equal`, the state-dict comparison it uses.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from .base import PluginContractBase, _gen, contract_plugins

__all__ = ["MethodContract", "assert_states_equal"]


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def assert_states_equal(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-6) -> None:
    """Assert two (nested) state dicts hold the same keys, tensors (allclose ``atol``) and plain values."""
    fa, fb = _flatten(a), _flatten(b)
    assert sorted(fa) == sorted(fb), f"state keys differ: {sorted(set(fa) ^ set(fb))[:10]}"
    for key in fa:
        va, vb = fa[key], fb[key]
        if isinstance(va, torch.Tensor):
            assert isinstance(vb, torch.Tensor), key
            assert va.shape == vb.shape and va.dtype == vb.dtype, key
            if va.is_floating_point():
                torch.testing.assert_close(va, vb, rtol=0, atol=atol, msg=f"{key} differs")
            else:
                assert torch.equal(va, vb), f"{key} differs"
        elif isinstance(va, float) and isinstance(vb, float):
            assert math.isclose(va, vb, rel_tol=0, abs_tol=atol) or (math.isnan(va) and math.isnan(vb)), key
        else:
            assert va == vb, f"{key}: {va!r} != {vb!r}"


class MethodContract(PluginContractBase):
    """Contract of a ``method``, using the real :func:`gflowzoo.session.resolve`, :func:`build_method` and
    :func:`gflowzoo.trainer.train`: a 2-step run writes config.toml, a checkpoint (loadable with
    ``weights_only=True``), metrics.jsonl and a final grid; 2 steps + resume to 4 equal 4 steps straight;
    a method rebuilt from the checkpoint samples like the trained one (and, where training changed the samples, unlike
    an untrained one); ``sample`` has the right shape, is finite and deterministic; the saved config resolves back to
    itself.

    The checks on ``state_dict`` alone (resume equivalence, the weights-only round trip) compare state dicts with
    each other, so a ``state_dict`` that leaves the trained state out (``{}``) passes them: both sides are empty.
    :meth:`test_checkpoint_restores_the_trained_method` compares what the method *does* instead.

    Put whatever makes the method tiny into :attr:`sets` (``["batch_size=16", "backbone.width=8"]``)."""

    method_name: ClassVar[str] = ""
    dataset: ClassVar[str] = "toy-8gaussians"
    #: ``--set`` style overrides that make the method tiny.
    sets: ClassVar[list[str]] = []
    #: Tolerance of the resume equivalence (0: bit for bit).
    resume_atol: ClassVar[float] = 1e-6
    n_samples: ClassVar[int] = 8

    # -- plumbing ----------------------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def method_registry(cls) -> Iterator[Any]:
        """The registry with this class's plugins, held for the whole class (training shares one state)."""
        with contract_plugins(tuple(cls.plugins), cls.plugin_object, cls.plugin_name) as state:
            yield state.registry

    @classmethod
    def resolve_spec(cls, registry: Any, steps: int, base: dict[str, Any] | None = None) -> Any:
        """The run spec for a tiny CPU run of ``steps`` total steps."""
        from ..session import resolve

        loop = ["run.log_every=1", "run.grid_size=16", "run.checkpoint_every=0", "run.sample_every=0",
                "run.eval_every=0", "run.minutes=0.0"]
        if base is not None:
            return resolve(registry, cls.method_name, base.get("dataset"), base=base,
                           sets=[f"run.steps={steps}"], overrides={"device": "cpu"})
        return resolve(registry, cls.method_name, cls.dataset, sets=loop + list(cls.sets) + [f"run.steps={steps}"],
                       overrides={"device": "cpu"}, preset="cpu-quick")

    @classmethod
    def train_run(cls, registry: Any, path: Path, steps: int, resume: bool = False) -> tuple[Any, Any, Any]:
        """Train into ``path`` (or resume it) up to ``steps`` through the run service
        (:func:`gflowzoo.runner.train_run`, as ``gflowzoo train`` does); returns ``(spec, method, result)``."""
        from ..runner import train_run
        from ..runs import RunDir

        run = RunDir(path)
        payload = None
        if resume:
            spec = cls.resolve_spec(registry, steps, base=run.read_config())
            _, payload = run.latest_checkpoint(cls.method_name)
        else:
            spec = cls.resolve_spec(registry, steps)
        outcome = train_run(registry, run, spec, payload=payload, progress=False)
        return spec, outcome.method, outcome.result

    @pytest.fixture(scope="class")
    @classmethod
    def trained(cls, method_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        """One 2-step run shared by the read-only checks."""
        path = tmp_path_factory.mktemp("run") / "run"
        spec, method, result = cls.train_run(method_registry, path, 2)
        return {"path": path, "spec": spec, "method": method, "result": result}

    # -- tests -------------------------------------------------------------------------------------------------
    def test_builds_through_registry(self, method_registry: Any) -> None:
        from ..interfaces import Method

        entry = method_registry.get("method", self.method_name)
        assert entry.summary
        cls = entry.load()
        assert issubclass(cls, Method)
        assert dataclasses.is_dataclass(cls.Config), "a method needs a Config dataclass"
        for variant in ("paper", "cpu-quick"):
            assert isinstance(cls.preset(self.dataset, variant), dict)

    def test_run_directory_written(self, trained: dict[str, Any]) -> None:
        from ..runs import RunDir

        run, result = RunDir(trained["path"]), trained["result"]
        assert run.config_path.is_file()
        ckpts = run.checkpoints()
        assert ckpts and str(ckpts[-1]) == result.checkpoint
        expected = 2 if getattr(trained["method"], "trainable", True) else 0
        assert result.step == expected
        records = run.read_metrics()
        if expected:
            assert records and all("step" in r and "time" in r for r in records)
            assert records[-1]["step"] == expected
        assert result.grid is not None and Path(result.grid).is_file() and Path(result.grid).stat().st_size > 0

    def test_checkpoint_loads_weights_only(self, method_registry: Any, trained: dict[str, Any]) -> None:
        from ..runs import RunDir, load_checkpoint
        from ..session import build_method

        path = RunDir(trained["path"]).checkpoints()[-1]
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert raw["method"] == self.method_name
        payload = load_checkpoint(path, self.method_name)
        fresh = build_method(method_registry, trained["spec"], "cpu")
        fresh.load_state_dict(payload["state"])
        assert_states_equal(fresh.state_dict(), trained["method"].state_dict(), atol=0.0)

    def test_checkpoint_restores_the_trained_method(self, method_registry: Any, trained: dict[str, Any]) -> None:
        """A method rebuilt from the final checkpoint samples exactly like the trained method (same seed); where
        training changed the samples (an untrained method samples differently), it does not sample like an untrained
        one. Catches a ``state_dict``/``load_state_dict`` pair that loses the trained state."""
        from ..runs import RunDir, load_checkpoint
        from ..session import build_method

        spec = trained["spec"]
        payload = load_checkpoint(RunDir(trained["path"]).checkpoints()[-1], self.method_name)
        rebuilt = build_method(method_registry, spec, "cpu")
        rebuilt.load_state_dict(payload["state"])
        untrained = build_method(method_registry, spec, "cpu")
        n = self.n_samples
        x_trained, x_rebuilt, x_untrained = (m.sample(n, _gen(11)) for m in (trained["method"], rebuilt, untrained))
        if not torch.equal(x_trained, x_untrained):  # training changed something: the checkpoint must hold it
            assert not torch.equal(x_rebuilt, x_untrained), (
                "the method rebuilt from the checkpoint samples like an untrained one: state_dict() or "
                "load_state_dict() loses the trained state"
            )
        torch.testing.assert_close(x_rebuilt, x_trained, rtol=0, atol=0,
                                   msg="the method rebuilt from the checkpoint samples unlike the trained one")

    def test_sample(self, trained: dict[str, Any]) -> None:
        method = trained["method"]
        n = self.n_samples
        a = method.sample(n, _gen(5))
        assert tuple(a.shape) == (n, *method.data.shape)
        assert a.device.type == "cpu" and torch.isfinite(a).all()
        b = method.sample(n, _gen(5))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert isinstance(method.sampling_info(), dict)

    def test_saved_config_resolves_to_itself(self, method_registry: Any, trained: dict[str, Any]) -> None:
        from ..config import load_toml

        saved = load_toml(Path(trained["path"]) / "config.toml")
        assert saved == trained["spec"].to_data()
        again = self.resolve_spec(method_registry, saved["run"]["steps"], base=saved)
        assert again.to_data() == saved

    def test_resume_equals_straight_run(self, method_registry: Any, tmp_path: Path) -> None:
        cls = method_registry.load("method", self.method_name)
        if not getattr(cls, "trainable", True):
            pytest.skip("method has nothing to train")
        _, straight, _ = self.train_run(method_registry, tmp_path / "straight", 4)
        self.train_run(method_registry, tmp_path / "resumed", 2)
        _, resumed, result = self.train_run(method_registry, tmp_path / "resumed", 4, resume=True)
        assert result.step == 4
        assert_states_equal(straight.state_dict(), resumed.state_dict(), atol=self.resume_atol)
