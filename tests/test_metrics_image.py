"""Image metrics (KID, FID, IS, precision/recall) against independent numpy/scipy implementations, and the
torch-fidelity glue against torch-fidelity's own ``calculate_metrics``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from gflowzoo.metrics.base import EvalContext
from gflowzoo.metrics.fidelity import Uint8Images, fid, inception_score, kid, precision_recall, to_uint8
from gflowzoo.metrics.image import FID, KID, InceptionScore, PrecisionRecall


def numpy_kid(fg: np.ndarray, fr: np.ndarray, subsets: int, m: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD² with k(a, b) = (a.b/d + 1)^3 on `subsets` subsets of size m, drawn as documented: a
    RandomState(seed) picks generated then reference indices without replacement, subset after subset."""
    d = fg.shape[1]
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(subsets):
        x = fg[rng.choice(len(fg), m, replace=False)]
        y = fr[rng.choice(len(fr), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.sum() / (m * m))
    return float(np.mean(vals)), float(np.std(vals))


class FeatureReference:
    """A stand-in reference that hands out fixed features (and fixed features for the generated side)."""

    def __init__(self, gen, ref, layer="f", logits=None):
        self.gen, self.ref = {layer: gen}, {layer: ref}
        if logits is not None:
            self.gen["logits"] = logits
        self.runtime = type("RT", (), {"extractor": type("E", (), {"feature_layer": layer, "logits_layer": "logits",
                                                                     "name": "fixed"})()})()

    def extract(self, x):
        return self.gen

    def features(self):
        return self.ref


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    fg = rng.standard_normal((260, 48)) * 0.8 + 0.3
    fr = np.abs(rng.standard_normal((310, 48)))
    return fg, fr


def test_kid_equals_independent_numpy_to_1e6_relative(feats):
    fg, fr = feats
    ctx = EvalContext(torch.zeros(len(fg), 1, 2, 2), FeatureReference(torch.tensor(fg), torch.tensor(fr)), seed=7)
    got = KID(subsets=20, subset_size=100).compute(ctx)
    want_mean, want_std = numpy_kid(fg, fr, 20, 100, seed=7)
    assert abs(got["kid"] - want_mean) <= 1e-6 * abs(want_mean)
    assert abs(got["kid_std"] - want_std) <= 1e-6 * abs(want_std)
    # subset size = smaller set size: every subset is a permutation of the whole generated set
    full_mean, _ = kid(torch.tensor(fg), torch.tensor(fr[:260]), subsets=3, subset_size=260, seed=1)
    assert abs(full_mean - numpy_kid(fg, fr[:260], 1, 260, 0)[0]) <= 1e-6 * abs(full_mean)


def test_kid_lowers_subset_size_with_a_warning(feats):
    fg, fr = feats
    ctx = EvalContext(torch.zeros(len(fg), 1, 2, 2), FeatureReference(torch.tensor(fg), torch.tensor(fr)), seed=2)
    got = KID(subsets=5, subset_size=1000).compute(ctx)
    assert ctx.warnings and "lowered from 1000 to 260" in ctx.warnings[0]
    assert got["kid"] == pytest.approx(numpy_kid(fg, fr, 5, 260, 2)[0], rel=1e-6)


def test_fid_matches_scipy_sqrtm(feats):
    fg, fr = feats
    mu1, mu2 = fg.mean(0), fr.mean(0)
    s1, s2 = np.cov(fg, rowvar=False), np.cov(fr, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    ctx = EvalContext(torch.zeros(len(fg), 1, 2, 2), FeatureReference(torch.tensor(fg), torch.tensor(fr)))
    assert FID().compute(ctx)["fid"] == pytest.approx(want, rel=1e-6)
    assert fid(torch.tensor(fr), torch.tensor(fr)) == pytest.approx(0.0, abs=1e-6)


def test_inception_score_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((200, 10)) * 3
    splits, seed = 4, 11
    perm = np.random.RandomState(seed).permutation(len(logits))
    z = logits[perm]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    ctx = EvalContext(torch.zeros(200, 1, 2, 2), FeatureReference(torch.zeros(200, 3), torch.zeros(5, 3),
                                                                  logits=torch.tensor(logits)), seed=seed)
    got = InceptionScore(splits=splits).compute(ctx)
    assert got["is"] == pytest.approx(np.mean(scores), rel=1e-9)
    assert got["is_std"] == pytest.approx(np.std(scores), rel=1e-9)
    # one class for every sample: IS = 1; uniform over K classes, each sample certain: IS = K
    certain = torch.full((100, 5), -50.0, dtype=torch.float64)
    certain[torch.arange(100), torch.arange(100) % 5] = 50.0
    assert inception_score(certain, splits=1)[0] == pytest.approx(5.0, rel=1e-6)
    assert inception_score(certain[::5], splits=1)[0] == pytest.approx(1.0, rel=1e-6)


def test_precision_recall_matches_numpy_knn_balls(feats):
    fg, fr = feats[0][:120], feats[1][:150]
    k = 3
    rg = np.sort(cdist(fg, fg), 1)[:, k]  # k-th neighbour radius (index 0 is the point itself)
    rr = np.sort(cdist(fr, fr), 1)[:, k]
    precision = (cdist(fg, fr) <= rr[None, :]).any(1).mean()
    recall = (cdist(fr, fg) <= rg[None, :]).any(1).mean()
    ctx = EvalContext(torch.zeros(120, 1, 2, 2), FeatureReference(torch.tensor(fg), torch.tensor(fr)))
    got = PrecisionRecall(neighborhood=k).compute(ctx)
    assert got["precision"] == pytest.approx(precision, abs=1e-6)
    assert got["recall"] == pytest.approx(recall, abs=1e-6)
    assert got["f_score"] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-6)
    same = precision_recall(torch.tensor(fr), torch.tensor(fr), k)
    assert same["precision"] == same["recall"] == 1.0


def test_to_uint8_is_exact_and_replicates_grey():
    u = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    x = u.float() / 127.5 - 1.0  # how the data sets map uint8 to model units
    out = to_uint8(x)
    assert out.dtype == torch.uint8 and out.shape == (5, 3, 4, 4)
    assert torch.equal(out[:, 0], u[:, 0]) and torch.equal(out[:, 1], u[:, 0]) and torch.equal(out[:, 2], u[:, 0])
    assert to_uint8(torch.tensor([[[[-3.0, 3.0]]]]).expand(1, 3, 1, 2)).tolist() == [[[[0, 255]]] * 3]
    ds = Uint8Images(out)
    assert len(ds) == 5 and torch.equal(ds[2], out[2])


def test_glue_equals_torch_fidelity_calculate_metrics(tmp_path, monkeypatch):
    """gflowzoo's feature extraction + float64 metrics give torch-fidelity's own numbers on the same inputs."""
    import torch_fidelity

    from gflowzoo.metrics.classifier import SPECS, build_net, save_classifier
    from gflowzoo.metrics.extractors import ClassifierExtractor
    from gflowzoo.metrics.fidelity import FeatureRuntime

    torch.manual_seed(0)
    spec = SPECS["net-digits"]
    net = build_net(spec.arch).eval()
    weights = save_classifier(net, spec, tmp_path / "rand.pt")
    rt = FeatureRuntime(ClassifierExtractor("net-digits", str(weights)), weights, "cpu")
    g = torch.Generator().manual_seed(3)
    gen = torch.rand(150, 1, 8, 8, generator=g) * 2 - 1
    ref = (torch.rand(180, 1, 8, 8, generator=g) * 1.6 - 0.8)
    fg, fr = rt.extract(gen), rt.extract(ref)
    assert fg["penultimate"].dtype == torch.float64 and fg["penultimate"].shape == (150, 128)
    ours_kid = kid(fg["penultimate"], fr["penultimate"], subsets=10, subset_size=100, seed=5)
    ours_fid = fid(fg["penultimate"], fr["penultimate"])
    theirs = torch_fidelity.calculate_metrics(
        input1=Uint8Images(to_uint8(gen)), input2=Uint8Images(to_uint8(ref)), cuda=False, kid=True, fid=True,
        feature_extractor="gflowzoo-net-digits", feature_extractor_weights_path=str(weights), kid_subsets=10,
        kid_subset_size=100, rng_seed=5, cache=False, verbose=False, save_cpu_ram=True)
    # torch-fidelity computes KID from float32 features: kernel values near 1 cancel down to ~1e-4, so its result
    # carries a float32 rounding error of about 1e-7 per kernel entry (gflowzoo casts to float64 first)
    assert ours_kid[0] == pytest.approx(theirs["kernel_inception_distance_mean"], abs=2e-7)
    assert ours_fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    # the features are the network's penultimate layer, read from grey images
    with torch.no_grad():
        direct = net((to_uint8(gen)[:, :1].float() / 127.5 - 1))[0].double()
    assert torch.allclose(fg["penultimate"], direct, atol=1e-5)
