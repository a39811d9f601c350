"""The paper's CIFAR augmentation written out by hand, for tests that check what a code path really fed in."""

import torch
import torch.nn.functional as F


def crop_flip_candidates(image: torch.Tensor, padding: int = 4, fill: int = 128) -> list[torch.Tensor]:
    """Every output RandomCrop(size, padding, fill) + HorizontalFlip can make from `image` (C, H, W uint8)."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4, value=fill)
    crops = [padded[:, top:top + height, left:left + width]
             for top in range(2 * padding + 1) for left in range(2 * padding + 1)]
    return crops + [crop.flip(-1) for crop in crops]


def is_crop_or_mirror(augmented: torch.Tensor, original: torch.Tensor) -> bool:
    return any(torch.equal(augmented, candidate) for candidate in crop_flip_candidates(original))
