from __future__ import annotations

import torch
import torch.nn.functional as F

from sksearch.data.device_loader import DeviceBatches


def _loader(seed=0, train=True, n=50, batch_size=16):
    g = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return images, labels, DeviceBatches(images, labels, batch_size=batch_size, device="cpu",
                                         mean=[0.5] * 3, std=[0.25] * 3, train=train, seed=seed)


def test_augmented_batches_keep_shapes_and_drop_the_partial_batch():
    _, _, train = _loader()
    batches = list(train)
    assert len(batches) == len(train) == 3  # 50 // 16
    for x, y in batches:
        assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (16,)
    _, _, val = _loader(train=False)
    assert [y.numel() for _, y in val] == [16, 16, 16, 2] and len(val) == 4


def test_each_image_is_a_padded_crop_maybe_flipped_of_its_source():
    images, labels, train = _loader()
    x, y = next(iter(train))
    padded = F.pad(images, (4, 4, 4, 4)).float().sub(127.5).div(63.75)  # (v/255 - .5)/.25
    for k in range(x.shape[0]):
        matches = [
            torch.allclose(x[k], cand, atol=1e-4)
            for i in (labels == y[k]).nonzero().flatten().tolist()
            for dy in range(9) for dx in range(9)
            for cand in (padded[i, :, dy:dy + 32, dx:dx + 32], padded[i, :, dy:dy + 32, dx:dx + 32].flip(2))
        ]
        assert any(matches)


def test_seeded_same_seed_same_batches_other_seed_or_epoch_differs():
    first = lambda loader: next(iter(loader))[0]  # noqa: E731
    a, b, c = _loader(seed=1)[2], _loader(seed=1)[2], _loader(seed=2)[2]
    assert torch.equal(first(a), first(b))
    assert not torch.equal(first(_loader(seed=1)[2]), first(c))
    # Epochs advance per pass; set_epoch replays one.
    loader = _loader(seed=1)[2]
    e0, e1 = first(loader), first(loader)
    assert not torch.equal(e0, e1)
    loader.set_epoch(0)
    assert torch.equal(first(loader), e0)


def test_every_training_image_appears_once_per_epoch():
    _, labels, train = _loader(n=48)
    seen = torch.cat([y for _, y in train])
    assert torch.equal(seen.sort().values, labels.sort().values)


def test_eval_batches_are_the_normalised_images_in_order():
    images, labels, val = _loader(train=False)
    x = torch.cat([b for b, _ in val])
    assert torch.allclose(x, images.float().sub(127.5).div(63.75), atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in val]), labels)
