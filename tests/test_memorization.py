"""The memorisation check: nearest-training distances and their summary."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.metrics.memorization import memorization_summary, nearest_distances


def test_nearest_distances_match_brute_force_across_blocks_and_parts():
    g = torch.Generator().manual_seed(0)
    x, train = torch.randn(17, 3, 4, 4, generator=g), torch.randn(50, 3, 4, 4, generator=g)
    want = torch.cdist(x.reshape(17, -1).double(), train.reshape(50, -1).double()).min(1).values
    assert torch.allclose(nearest_distances(x, train, block=7), want, atol=1e-9)
    # an iterable of parts (a data set's batches) gives the same
    assert torch.allclose(nearest_distances(x, [train[:20], train[20:]], block=64), want, atol=1e-9)


def test_copies_have_distance_zero_and_wrong_sizes_are_refused():
    g = torch.Generator().manual_seed(1)
    train = torch.randn(30, 5, generator=g)
    assert torch.allclose(nearest_distances(train[:10], train), torch.zeros(10, dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="values each"):
        nearest_distances(torch.randn(4, 6), train)


def test_summary_tells_a_copying_model_from_one_that_generalises():
    g = torch.Generator().manual_seed(2)
    train, held_out = torch.randn(2000, 8, generator=g), torch.randn(500, 8, generator=g)
    fresh = torch.randn(500, 8, generator=g)  # a perfect model: new draws of the same distribution
    copies = train[torch.randint(0, 2000, (500,), generator=g)] + 0.01 * torch.randn(500, 8, generator=g)
    real_d = nearest_distances(held_out, train)
    good = memorization_summary(nearest_distances(fresh, train), real_d)
    bad = memorization_summary(nearest_distances(copies, train), real_d)
    assert 0.85 < good["nn_ratio"] < 1.15 and good["nn_copies"] < 0.05
    assert bad["nn_ratio"] < 0.05 and bad["nn_copies"] > 0.95
    assert good["nn_real"] == bad["nn_real"] == pytest.approx(float(real_d.median()))


def test_evaluation_flags_training_copies_and_not_held_out_digits():
    """Through the real evaluator on digits: training images score as copies, unseen test images do not."""
    from gflowzoo.data import DataHandle
    from gflowzoo.evaluate import Evaluator

    data = DataHandle("digits")
    ev = Evaluator(data, ["nn"], n=200, seed=0)
    train = data.train.get(torch.arange(200))
    held_out = data.test.get(torch.arange(200))  # unseen in training, like the real items measured against
    copied, fresh = ev.evaluate_samples(train).values, ev.evaluate_samples(held_out).values
    assert copied["nn_train"] == 0.0 and copied["nn_copies"] == 1.0 and copied["nn_ratio"] == 0.0
    assert 0.8 < fresh["nn_ratio"] < 1.25 and fresh["nn_copies"] < 0.1


def test_streaming_evaluation_keeps_the_samples_the_metric_reads():
    """An image evaluation whose other metrics read features keeps the first ``n`` images of ``nn``, not all."""
    from gflowzoo.data import DataHandle
    from gflowzoo.evaluate import Evaluator

    ev = Evaluator(DataHandle("digits"), ["kid", {"name": "nn", "n": 300}], n=400, seed=0, ref_n=500)
    ev.keep_images = 16
    assert ev.streams_features() and ev._kept_when_streaming() == 300
    ev2 = Evaluator(DataHandle("digits"), ["kid", "nn"], n=400, seed=0, ref_n=500)
    assert ev2._kept_when_streaming() == 400  # never more than the evaluation draws
