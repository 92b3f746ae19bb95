"""Autoencoder."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dl_runner.tasks.base import OPTIM_RULES, Task
from runner_core.validation import positive_int


class Autoencoder(Task):
    """An encoder to a `latent`-dimensional code and a decoder back to the input, trained to
    minimise the reconstruction error L = 1/(B D) sum_i ||x_i - g(f(x_i))||^2 (Hinton &
    Salakhutdinov 2006). With linear layers only it can do no better than PCA with `latent`
    components; the nonlinear networks of the `network` group do better (the convergence test
    holds it below PCA on the same split). Logs an input-vs-reconstruction image grid."""

    rules = (*OPTIM_RULES, positive_int("algo.latent"), positive_int("algo.grid_examples"))
    roles = ("encoder", "decoder")
    objective = "val/mse"
    mode = "min"

    def __init__(self, cfg: Any, data: Any, device: torch.device, total_steps: int) -> None:
        super().__init__(cfg, data, device, total_steps)
        self.shape = data.example_shape
        self.encoder = self.build("encoder", self.shape, self.hp.latent)
        self.decoder = self.build("decoder", (self.hp.latent,), math.prod(self.shape))
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.optimizer, self.scheduler = self.optimizer_for(params)

    def stateful(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder, "decoder": self.decoder, "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }  # fmt: skip

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).reshape(x.shape)

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        loss = F.mse_loss(self.reconstruct(x), x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "lr": self.scheduler.get_last_lr()[0]}

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        error = (self.reconstruct(x) - x).square().flatten(1).mean(1)
        return {"loss": error, "mse": error}

    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """ "reconstructions": the first `grid_examples` inputs (top row) over their
        reconstructions (bottom row), each scaled back to the data's own range."""
        n = min(self.hp.grid_examples, len(x))
        with torch.no_grad():
            pairs = torch.stack([x[:n], self.reconstruct(x[:n])]).cpu().numpy()
        stats = self.data.stats
        mean = stats["mean"].numpy().reshape(self.shape)
        std = stats["std"].numpy().reshape(self.shape)
        raw = pairs * std + mean  # (2, n, C, H, W) in the data's units
        lo, hi = float(raw[0].min()), float(raw[0].max())
        pixels = np.clip((raw - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
        return {"reconstructions": image_grid(pixels)}


def image_grid(images: np.ndarray, scale: int = 4, gap: int = 1) -> np.ndarray:
    """(rows, cols, C, H, W) values in [0, 1] -> one (H', W', 3) uint8 image, each cell
    enlarged `scale` times (nearest neighbour) with a `gap`-pixel border."""
    rows, cols, c, h, w = images.shape
    big = np.kron(images, np.ones((scale, scale)))  # (rows, cols, C, h*scale, w*scale)
    hs, ws = h * scale, w * scale
    grid = np.ones((rows * (hs + gap) + gap, cols * (ws + gap) + gap, 3))
    for r in range(rows):
        for k in range(cols):
            cell = big[r, k]
            cell = np.repeat(cell, 3, axis=0) if c == 1 else cell[:3]
            top, left = gap + r * (hs + gap), gap + k * (ws + gap)
            grid[top : top + hs, left : left + ws] = cell.transpose(1, 2, 0)
    return (grid * 255).round().astype(np.uint8)
