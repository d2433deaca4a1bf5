"""A built-in 10-class image set that needs no download and rewards the right receptive field.

Each image is one object (a shape filled with a texture) drawn at a random scale (half-size 4 to 13
pixels) and position over a textured background. The class is the object's shape; colours, scale,
position, background texture and contrast are random, so no single pixel or colour gives it away and a
network must see the whole object (small objects need small kernels, large ones wide receptive fields:
exactly what SK units choose between).

Everything is vectorised over the images (one loop over the 10 classes, none over images): 10,000
images take well under a second.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

NUM_CLASSES = 10
SIZE = 32
CLASS_NAMES = ("disc", "ring", "square", "frame", "triangle", "plus", "cross", "diamond", "striped", "checkered")


def _shape_mask(cls: int, u: Tensor, v: Tensor) -> Tensor:
    """Inside-ness in [0, 1] of shape `cls` at object coordinates (u, v), the object spanning [-1, 1]."""
    r = torch.sqrt(u * u + v * v)
    box = torch.maximum(u.abs(), v.abs())
    if cls == 0:
        d = 1 - r                                                    # disc
    elif cls == 1:
        d = 0.22 - (r - 0.75).abs()                                  # ring
    elif cls == 2:
        d = 0.85 - box                                               # filled square
    elif cls == 3:
        d = torch.minimum(0.9 - box, box - 0.5)                      # square frame
    elif cls == 4:
        d = torch.minimum(0.85 - v, (v + 0.85) * 0.5 - u.abs())      # triangle, apex up
    elif cls == 5:
        d = torch.maximum(0.3 - u.abs(), 0.3 - v.abs()).minimum(1 - box)  # plus sign
    elif cls == 6:
        d = torch.minimum(0.28 - (u.abs() - v.abs()).abs(), 0.95 - box)  # diagonal cross (x)
    elif cls == 7:
        d = 1 - (u.abs() + v.abs())                                  # diamond
    elif cls == 8:
        d = torch.minimum(0.9 - box, torch.cos(math.pi * 2.5 * v) * 0.3)  # square of horizontal stripes
    else:
        d = torch.minimum(0.9 - box, torch.sin(math.pi * 2 * u) * torch.sin(math.pi * 2 * v) * 0.3)  # checkered square
    return d


def _texture(n: int, g: torch.Generator, amplitude: Tensor) -> Tensor:
    """(n, 1, 32, 32) oriented grating plus pixel noise, zero-mean, of per-image amplitude."""
    y, x = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    theta = torch.rand(n, 1, 1, generator=g) * math.pi
    freq = 0.2 + torch.rand(n, 1, 1, generator=g) * 1.2          # radians per pixel
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    wave = torch.sin(freq * (x * torch.cos(theta) + y * torch.sin(theta)) + phase)
    noise = torch.randn(n, SIZE, SIZE, generator=g) * 0.5
    return ((wave + noise) * amplitude.view(n, 1, 1)).unsqueeze(1)


def generate(n: int, seed: int, object_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """n images (uint8, (n, 3, 32, 32)) and their labels (int64), balanced over the 10 classes.

    object_scale k draws the same scenes (background, colours, textures, noise, object centre) with every
    object k times larger about its own centre, so that object size is the only thing that changes
    (`sksearch attention` uses it; large objects are cut by the border as in the paper's central crop)."""
    if object_scale <= 0:
        raise ValueError(f"object_scale must be positive (got {object_scale})")
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    labels = labels[torch.randperm(n, generator=g)]

    # Background: a random colour modulated by a random grating and noise.
    bg_colour = torch.rand(n, 3, 1, 1, generator=g)
    bg = bg_colour + _texture(n, g, 0.04 + 0.08 * torch.rand(n, generator=g)) * 0.6

    # Object: a random colour at least 0.35 away from the background in brightness, so it is visible
    # but neither colour nor brightness says which class it is.
    fg_colour = torch.rand(n, 3, 1, 1, generator=g)
    gap = fg_colour.mean(1, keepdim=True) - bg_colour.mean(1, keepdim=True)
    sign = torch.where(gap >= 0, 1.0, -1.0)
    push = (0.35 - gap.abs()).clamp(min=0) * sign
    fg_colour = fg_colour + push
    fg = fg_colour + _texture(n, g, 0.03 + 0.05 * torch.rand(n, generator=g)) * 0.6

    # Scale (half-size in pixels) and centre; the object may be cut by the border a little.
    half = 4 + torch.rand(n, generator=g) * 9
    lo = half * 0.7
    cx = lo + torch.rand(n, generator=g) * (SIZE - 1 - 2 * lo)
    cy = lo + torch.rand(n, generator=g) * (SIZE - 1 - 2 * lo)
    if object_scale != 1.0:  # after the centre is placed, so that k changes the size and nothing else
        half = half * object_scale
    coords = torch.arange(SIZE, dtype=torch.float32)
    u = (coords.view(1, 1, SIZE) - cx.view(n, 1, 1)) / half.view(n, 1, 1)
    v = (coords.view(1, SIZE, 1) - cy.view(n, 1, 1)) / half.view(n, 1, 1)
    u, v = u.expand(n, SIZE, SIZE), v.expand(n, SIZE, SIZE)

    mask = torch.empty(n, SIZE, SIZE)
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().squeeze(1)
        # Soft edge about one pixel wide: the distance-like value is in object units, so scale by half.
        d = _shape_mask(c, u[idx], v[idx]) * half[idx].view(-1, 1, 1)
        mask[idx] = (d + 0.5).clamp(0, 1)
    mask = mask.unsqueeze(1)

    img = bg * (1 - mask) + fg * mask
    img = img + torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.03
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


@lru_cache(maxsize=4)
def synthetic_split(n: int, seed: int, split: str, object_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """The train or test part, cached per process (the tuner builds many trials on one set).

    Train and test come from different generator streams of the same seed, so they never share an image.
    object_scale: the same images with k-times-larger objects (see generate)."""
    offset = {"train": 0, "test": 1_000_003}[split]
    return generate(n, seed + offset, object_scale)
