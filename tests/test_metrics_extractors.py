"""Feature extractors: Inception weight resolution (offline), gflowzoo-trained classifiers, the reference cache."""

from __future__ import annotations

import hashlib

import pytest
import torch
from typer.testing import CliRunner

from gflowzoo.data import DataHandle, open_dataset
from gflowzoo.errors import CheckpointError, UserError
from gflowzoo.metrics.classifier import (
    SPECS,
    ClassifierSpec,
    build_net,
    fit_classifier,
    load_classifier,
    save_classifier,
)
from gflowzoo.metrics.extractors import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    ClassifierExtractor,
    InceptionV3Compat,
    extractor_for_dataset,
    file_sha256,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty gflowzoo cache and torch home for the test."""
    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    return tmp_path


def test_inception_missing_weights_fail_at_once_with_instructions(cache):
    with pytest.raises(UserError) as err:
        InceptionV3Compat().resolve_weights()
    msg = str(err.value)
    hub = cache / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    assert str(hub) in msg and "--inception-weights" in msg and INCEPTION_ENV in msg and "https://" in msg


def test_inception_weight_resolution_order(cache, monkeypatch):
    sd = {"fc.weight": torch.zeros(2, 2)}
    hub = cache / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    torch.save(sd, hub)
    assert InceptionV3Compat().resolve_weights() == hub
    env_file = cache / "env.pth"
    torch.save(sd, env_file)
    monkeypatch.setenv(INCEPTION_ENV, str(env_file))
    assert InceptionV3Compat().resolve_weights() == env_file
    opt_file = cache / "opt.pth"
    torch.save(sd, opt_file)
    assert InceptionV3Compat(weights=str(opt_file)).resolve_weights() == opt_file
    with pytest.raises(UserError, match="does not exist"):  # an explicit path never falls back
        InceptionV3Compat(weights=str(cache / "nope.pth")).resolve_weights()
    truncated = cache / "cut.pth"
    truncated.write_bytes(opt_file.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        InceptionV3Compat(weights=str(truncated)).resolve_weights()


def test_inception_features_with_random_weights(cache, monkeypatch):
    """The real code path with a random-weight state dict built here (no download): 2048 features, 1008 logits."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc

    from gflowzoo.metrics.fidelity import FeatureRuntime

    monkeypatch.setattr(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    monkeypatch.setattr(inc, "load_state_dict_from_url", lambda *a, **k: {})
    torch.manual_seed(0)
    net = inc.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    monkeypatch.undo()
    monkeypatch.setenv("GFLOWZOO_CACHE", str(cache / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    path = cache / "random-inception.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.setenv(INCEPTION_ENV, str(path))
    ext = InceptionV3Compat()
    resolved = ext.resolve_weights()
    assert resolved == path
    rt = FeatureRuntime(ext, resolved, "cpu")
    assert rt.describe()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.rand(2, 1, 8, 8) * 2 - 1  # grey 8x8: replicated to RGB, resized to 299 inside torch-fidelity
    f = rt.extract(x)
    assert f["2048"].shape == (2, 2048) and f["logits_unbiased"].shape == (2, 1008)
    assert f["2048"].dtype == torch.float64 and torch.isfinite(f["2048"]).all()


TINY = ClassifierSpec("net-digits", "digits", {"in_shape": [1, 8, 8], "convs": [[8, True]], "hidden": 32,
                                                "num_classes": 10}, {**SPECS["net-digits"].recipe, "epochs": 2})


def test_classifier_fit_saves_plain_data_and_reports_accuracy(cache):
    spec = TINY  # a narrower network than net-digits' (same code path, a fraction of the time)
    train, test = open_dataset("digits", "train"), open_dataset("digits", "test")
    path = cache / "nd.pt"
    res = fit_classifier(spec, train, test, path)
    payload = torch.load(path, weights_only=True)  # tensors and plain data only
    assert payload["format"] == "gflowzoo-extractor" and payload["recipe"]["epochs"] == 2
    net, _ = load_classifier(path)
    x = torch.as_tensor(test.array).float() / 127.5 - 1
    with torch.no_grad():
        acc = (net(x)[1].argmax(1).numpy() == test.labels).mean()
    assert res.test_accuracy == pytest.approx(acc) == pytest.approx(payload["test_accuracy"])
    assert acc > 0.5  # two epochs on 1,500 digits: far above chance (0.1)
    # features are scaled so that their mean square on the training split is 1
    xt = torch.as_tensor(train.array).float() / 127.5 - 1
    with torch.no_grad():
        assert float(net(xt)[0].double().square().mean()) == pytest.approx(1.0, rel=1e-4)


def test_classifier_resolution_and_shape_checks(cache):
    lenet = ClassifierExtractor("lenet-mnist")
    with pytest.raises(UserError, match="gflowzoo extractor fit --dataset mnist"):
        lenet.resolve_weights()
    with pytest.raises(UserError, match=r"\[1, 28, 28\]"):
        lenet.check_shape((1, 8, 8))
    spec = SPECS["lenet-mnist"]
    older = save_classifier(build_net(spec.arch), spec, cache / "cache" / "extractors" / "lenet-mnist-0badc0de.pt")
    assert lenet.resolve_weights() == older  # no file of the default recipe: the newest one of that name
    default = save_classifier(build_net(spec.arch), spec, lenet.default_path())
    assert lenet.resolve_weights() == default
    assert ClassifierExtractor("lenet-mnist", weights=str(older)).resolve_weights() == older
    assert extractor_for_dataset("mnist") == "lenet-mnist"
    with pytest.raises(UserError, match="No gflowzoo-trained"):
        extractor_for_dataset("celeba64")


def test_reference_features_are_cached_and_reused(cache):
    from gflowzoo.metrics.fidelity import FeatureRuntime
    from gflowzoo.metrics.reference import Reference

    torch.manual_seed(1)
    spec = SPECS["net-digits"]
    weights = save_classifier(build_net(spec.arch), spec, cache / "w.pt")
    rt = FeatureRuntime(ClassifierExtractor("net-digits", str(weights)), weights, "cpu")
    data = DataHandle("digits")
    first = Reference(data.train, "digits", "train", 400, rt)
    f1 = first.features()
    assert first.cache_hit is False and first.cache_path().is_file()
    assert rt.sha256[:16] in first.cache_path().name and "-n400" in first.cache_path().name
    second = Reference(data.train, "digits", "train", 400, rt)
    f2 = second.features()
    assert second.cache_hit is True and torch.equal(f1["penultimate"], f2["penultimate"])
    # the cached features are those of the chosen items
    direct = rt.extract(data.train.get(first.indices()))
    assert torch.equal(direct["penultimate"], f1["penultimate"])
    assert len(first.indices()) == 400 and torch.equal(first.indices(), second.indices())
    assert Reference(data.train, "digits", "train", 300, rt).cache_path() != first.cache_path()


def test_extractor_fit_command(cache, monkeypatch):
    from gflowzoo.cli import build_app

    monkeypatch.setitem(SPECS, "net-digits", TINY)  # the command's logic, with a network that trains in a blink

    res = CliRunner().invoke(build_app(), ["extractor", "fit", "--dataset", "digits", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    files = list((cache / "cache" / "extractors").glob("net-digits-*.pt"))
    assert len(files) == 1 and file_sha256(files[0])[:16] in res.output
    again = CliRunner().invoke(build_app(), ["extractor", "fit", "--dataset", "digits", "--epochs", "1"])
    assert again.exit_code == 0 and "already trained" in again.output
    bad = CliRunner().invoke(build_app(), ["extractor", "fit", "--dataset", "toy-moons"])
    assert bad.exit_code == 2 and "No gflowzoo-trained" in bad.output
