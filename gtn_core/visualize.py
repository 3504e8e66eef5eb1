"""Pictures of a curriculum: one PNG grid, rows = inner steps, columns = positions in the batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def curriculum_grid(images: torch.Tensor, gap: int = 1) -> np.ndarray:
    """Tile images (K, B, 1, H, W) in [-1, 1] into a uint8 array (K*(H+gap)-gap, B*(W+gap)-gap)."""
    if images.dim() != 5 or images.shape[2] != 1:
        raise ValueError(f"images {tuple(images.shape)}: expected (K, B, 1, H, W) grayscale")
    steps, batch, _, height, width = images.shape
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    grid = np.full((steps * (height + gap) - gap, batch * (width + gap) - gap), 255, dtype=np.uint8)
    for row in range(steps):
        for col in range(batch):
            top, left = row * (height + gap), col * (width + gap)
            grid[top:top + height, left:left + width] = pixels[row, col, 0]
    return grid


def save_curriculum_png(images: torch.Tensor, path: str | Path) -> Path:
    """Write the curriculum grid of `images` (K, B, 1, H, W) as a grayscale PNG."""
    from PIL import Image  # Pillow ships with matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(curriculum_grid(images), mode="L").save(path)
    return path
