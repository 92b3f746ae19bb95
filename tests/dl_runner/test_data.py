"""Data modules: stratified splits, the digits data set, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dl_runner.data import load_data, stratified_split
from runner_core.errors import ConfigError

CPU = torch.device("cpu")


def test_stratified_split_proportions():
    y = np.repeat([0, 1, 2], [100, 60, 40])
    np.random.default_rng(0).shuffle(y)
    train, val, test = stratified_split(y, val=0.15, test=0.25, seed=0)
    for label, n in ((0, 100), (1, 60), (2, 40)):
        assert (y[test] == label).sum() == round(n * 0.25)
        assert (y[val] == label).sum() == round(n * 0.15)
        assert (y[train] == label).sum() == n - round(n * 0.25) - round(n * 0.15)
    everything = np.concatenate([train, val, test])
    assert len(everything) == len(y)
    assert set(everything.tolist()) == set(range(len(y)))  # disjoint and complete
    for part in (train, val, test):
        assert (np.diff(part) > 0).all()  # sorted


def test_stratified_split_is_seeded():
    y = np.repeat(np.arange(4), 25)
    a = stratified_split(y, 0.2, 0.2, seed=1)
    b = stratified_split(y, 0.2, 0.2, seed=1)
    c = stratified_split(y, 0.2, 0.2, seed=2)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, z)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def _cfg(**over):
    base = {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.15, "standardize": True}
    return OmegaConf.create({**base, **over})


def test_digits():
    data = load_data(_cfg(), seed=0, device=CPU)
    assert (data.example_shape, data.n_classes) == ((1, 8, 8), 10)
    assert (len(data.train), len(data.val), len(data.test)) == (1259, 269, 269)
    x, y = data.train.tensors
    assert x.shape == (1259, 1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    # standardized with training statistics: mean 0 on the training split
    assert x.flatten(1).mean(0).abs().max().item() < 1e-4
    raw = load_data(_cfg(standardize=False), seed=0, device=CPU)
    assert raw.train.tensors[0].max().item() == 16.0
    assert set(data.stats) == {"mean", "std"}


def test_loaders_draw_whole_minibatches_in_a_stored_order():
    data = load_data(_cfg(), seed=0, device=CPU)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    batches = list(data.loader("train", 64, order))
    assert len(batches) == 20  # ceil(1259 / 64)
    x, y = data.train.tensors
    torch.testing.assert_close(batches[0][0], x[order[:64]])
    torch.testing.assert_close(batches[-1][1], y[order[19 * 64 :]])
    resumed = list(data.loader("train", 64, order, first=5))  # a run resumed at batch 5
    assert len(resumed) == 15
    torch.testing.assert_close(resumed[0][0], batches[5][0])
    whole = list(data.loader("val", 512))
    assert len(whole) == 1 and torch.equal(whole[0][1], data.val.tensors[1])
    # the split's own order, in slices: every example once, in order, from a given batch on
    pieces = data.loader("val", 100, first=1)
    assert len(pieces) == len(list(pieces)) == -(-len(data.val) // 100) - 1
    assert torch.equal(torch.cat([y for _, y in pieces]), data.val.tensors[1][100:])
    shards = [list(data.loader("val", 100, shard=(rank, 2))) for rank in range(2)]
    joined = [torch.cat([a[1], b[1]]) for a, b in zip(*shards, strict=True)]
    assert torch.equal(torch.cat(joined), data.val.tensors[1])


@pytest.mark.parametrize(
    "over",
    [{"val_fraction": 0.0}, {"test_fraction": 1.0}, {"val_fraction": 0.6, "test_fraction": 0.5}],
)
def test_bad_fractions(over):
    with pytest.raises(ConfigError, match=r"dataset\.val_fraction"):
        load_data(_cfg(**over), seed=0, device=CPU)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match=r"'dataset\.name' is 'mnist'; known data sets: digits"):
        load_data(_cfg(name="mnist"), seed=0, device=CPU)
