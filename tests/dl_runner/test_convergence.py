"""The DL presets reach their published scores (slow: run by default and in CI)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA

from dl_runner.data import load_data
from tests.conftest import compose_cfg, read_summary, run_train


@pytest.mark.slow
def test_digits_default_reaches_97_percent(tmp_path):
    cfg = compose_cfg(["seed=0", "logger.console=off"], "dl", fast=False)
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] == cfg.algo.epochs * 20
    assert summary["test/acc"] >= 0.97, summary


@pytest.mark.slow
def test_cnn_on_digit_images_reaches_98_percent(tmp_path):
    cfg = compose_cfg(["network=cnn", "seed=0", "logger.console=off"], "dl", fast=False)
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["test/acc"] >= 0.98, summary


@pytest.mark.slow
def test_autoencoder_beats_pca_with_as_many_components(tmp_path):
    """Test reconstruction error below PCA's with `latent` (8) components fitted on the same
    training split, in the same (standardized) units; the input-vs-reconstruction grid is in
    TensorBoard and in images/ as a PNG."""
    cfg = compose_cfg(["algo=autoencoder", "seed=0", "logger.console=off"], "dl", fast=False)
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    data = load_data(cfg.dataset, cfg.seed, torch.device("cpu"))
    train_x = data.train.tensors[0].flatten(1).numpy()
    test_x = data.test.tensors[0].flatten(1).numpy()
    pca = PCA(cfg.algo.latent).fit(train_x)
    pca_mse = float(np.square(pca.inverse_transform(pca.transform(test_x)) - test_x).mean())
    assert summary["test/mse"] < pca_mse, (summary["test/mse"], pca_mse)
    (png,) = (tmp_path / "run" / "images").glob("test_reconstructions_*.png")
    image = Image.open(io.BytesIO(png.read_bytes()))
    assert image.mode == "RGB" and image.size[0] > image.size[1] > 0  # 2 rows of 16 digits
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0})
    acc.Reload()
    assert {"val/reconstructions", "test/reconstructions"} <= set(acc.Tags()["images"])
