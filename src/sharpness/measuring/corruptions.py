"""Common corruptions (CIFAR-10-C style) generated in torch, on whole batches, on any device.

Hendrycks & Dietterich (2019) published CIFAR-10-C as files; when those are absent the book makes its
own: the 15 standard corruptions plus 4 extra ones, at 5 severities, with the CIFAR (32 x 32) severity
constants of their generation script (ImageNet-C constants are far too strong for 32 x 32 images).
The operations are our own torch versions of theirs, close in spirit but not pixel-identical:

- frost: their frost photographs are not available, so a procedural ice texture stands in (see
  `frost_texture`);
- glass_blur: their sequential pixel swaps become one random local gather per pass (vectorised);
- motion_blur and snow: a one-sided Gaussian line kernel replaces ImageMagick's motion blur;
- spatter: the water mode keeps the idea (bright, cyan-tinted droplets from thresholded, blurred noise)
  without their edge-detection shading.

pixelate reproduces PIL's BOX resizing (checked to one grey level), jpeg_compression uses PIL itself.

Every corruption is deterministic given (seed, name, severity): randomness comes from a CPU generator,
so the same images come out on CPU and GPU up to floating-point rounding.
"""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

Tensor = torch.Tensor

STANDARD_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)  # fmt: skip
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = STANDARD_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)

# CIFAR severity constants (one entry per severity), as in the CIFAR-10-C generation script.
CIFAR_SEVERITY = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, delta, passes
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # radius, alias blur
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, sigma
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # zooms 1.00, 1.01, ... below this bound
    "snow": [  # mean, std, zoom, threshold, blur radius, blur sigma, image blend
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # image weight, frost weight
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # strength, roughness decay
    "spatter": [  # mean, std, blur sigma, threshold, intensity, mode (0 water, 1 mud)
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],  # saturation * a + b
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}


# ----------------------------------------------------------------------------------------------
# Random numbers: a CPU generator per (seed, corruption, severity), values moved to the images
# ----------------------------------------------------------------------------------------------


class Randomness:
    """Draws on a seeded CPU generator and moves the values to `device` (device-independent images)."""

    def __init__(self, seed: int, device: torch.device):
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device

    def normal(self, *shape, mean=0.0, std=1.0) -> Tensor:
        return (torch.randn(shape, generator=self.generator) * std + mean).to(self.device)

    def uniform(self, *shape, low=0.0, high=1.0) -> Tensor:
        return (torch.rand(shape, generator=self.generator) * (high - low) + low).to(self.device)

    def integers(self, low: int, high: int, *shape) -> Tensor:
        return torch.randint(low, high, shape, generator=self.generator).to(self.device)

    def poisson(self, rates: Tensor) -> Tensor:
        return torch.poisson(rates.cpu().double(), generator=self.generator).to(self.device, rates.dtype)


def corruption_seed(seed: int, name: str, severity: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode()) * 7 + severity) % (2**63)


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur with a kernel reaching 4 sigma (as scikit-image), reflecting at the borders."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(4 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    return TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])


def filter_channels(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel of x (B, C, H, W) with one 2-d kernel, reflecting at the borders."""
    channels = x.shape[1]
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    weight = kernel.to(x)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(padded, weight, groups=channels)


def sample(x: Tensor, grid: Tensor, padding: str = "reflection") -> Tensor:
    return F.grid_sample(x, grid.to(x), mode="bilinear", padding_mode=padding, align_corners=False)


def identity_grid(x: Tensor) -> Tensor:
    """Pixel-centre sampling grid (B, H, W, 2) in grid_sample's [-1, 1] coordinates."""
    batch, _, height, width = x.shape
    theta = torch.eye(2, 3, device=x.device).expand(batch, 2, 3)
    return F.affine_grid(theta, [batch, 1, height, width], align_corners=False)


def pixels_to_grid(shift_pixels: Tensor, x: Tensor) -> Tensor:
    """Convert (..., 2) shifts in pixels (dx, dy) into grid_sample units."""
    height, width = x.shape[-2:]
    return shift_pixels * torch.tensor([2.0 / width, 2.0 / height], device=x.device)


def motion_blur_batch(x: Tensor, radius: int, sigma: float, angles_degrees: Tensor) -> Tensor:
    """One-sided Gaussian line blur: average of copies shifted by 0..2*radius pixels along each angle."""
    width = 2 * radius + 1
    weights = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    angles = torch.deg2rad(angles_degrees.to(x))
    direction = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (B, 2) in (dx, dy)
    base = identity_grid(x)
    out = torch.zeros_like(x)
    for step, weight in enumerate(weights):
        shift = pixels_to_grid(direction * step, x)[:, None, None, :]
        out += weight * sample(x, base + shift, padding="border")
    return out


def zoom_centre(x: Tensor, factor: float) -> Tensor:
    """Zoom into the image centre by `factor` (>= 1), keeping the size."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return sample(x, grid, padding="border")


def grey(x: Tensor) -> Tensor:
    return TF.rgb_to_grayscale(x)


def plasma_fractal(batch: int, size: int, decay: float, random: Randomness) -> Tensor:
    """Diamond-square height maps (B, size, size) in [0, 1]: the fog layer; `size` a power of two."""
    if size & (size - 1):
        raise ValueError(f"plasma fractal size must be a power of two, got {size}")
    height = torch.zeros(batch, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def jittered_mean(total: Tensor) -> Tensor:
        noise = torch.rand(total.shape, generator=random.generator, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = height[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        height[:, half::step, half::step] = jittered_mean(squares)
        centres = height[:, half::step, half::step]
        corners = height[:, 0::step, 0::step]
        height[:, 0::step, half::step] = jittered_mean(
            centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        )
        height[:, half::step, 0::step] = jittered_mean(
            centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        )
        step, wibble = half, wibble / decay
    flat = height.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    return ((height - low[:, None, None]) / (high - low)[:, None, None]).float().to(random.device)


def frost_texture(batch: int, height: int, width: int, random: Randomness) -> Tensor:
    """A procedural stand-in for the frost photographs: icy crystalline streaks on a pale blue haze.

    Sharp ridges of multi-scale noise (1 - |noise|, raised to a power) look like ice crystals; a faint
    bluish-white tint matches the colour of the real frost pictures.
    """
    texture = torch.zeros(batch, 1, height, width, device=random.device)
    for scale, amplitude in ((4, 0.5), (8, 0.3), (16, 0.2)):
        coarse = random.normal(batch, 1, scale, scale)
        noise = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        texture += amplitude * (1 - noise.abs().clamp(max=1)) ** 4
    texture = blur(texture / texture.amax(dim=(2, 3), keepdim=True), 0.5)
    tint = torch.tensor([0.85, 0.92, 1.0], device=random.device)[None, :, None, None]
    return (0.35 + 0.65 * texture) * tint


def hsv_value_saturation(x: Tensor) -> tuple[Tensor, Tensor]:
    value = x.amax(dim=1, keepdim=True)
    saturation = torch.where(value > 0, (value - x.amin(dim=1, keepdim=True)) / value.clamp_min(1e-12), 0)
    return value, saturation


# ----------------------------------------------------------------------------------------------
# The corruptions: float images in [0, 1] (B, 3, H, W) -> same, given the severity constant
# ----------------------------------------------------------------------------------------------


def _gaussian_noise(x, c, random):
    return x + random.normal(*x.shape, std=c)


def _shot_noise(x, c, random):
    return random.poisson(x * c) / c


def _impulse_noise(x, c, random):
    hit = random.uniform(*x.shape) < c
    salt = (random.uniform(*x.shape) < 0.5).to(x)
    return torch.where(hit, salt, x)


def _speckle_noise(x, c, random):
    return x + x * random.normal(*x.shape, std=c)


def _gaussian_blur(x, c, random):
    return blur(x, c)


def _glass_blur(x, c, random):
    sigma, delta, passes = c
    x = (blur(x, sigma) * 255).round() / 255  # their swaps act on 8-bit pixels
    batch, _, height, width = x.shape
    rows = torch.arange(height, device=x.device)[:, None].expand(height, width)
    cols = torch.arange(width, device=x.device)[None, :].expand(height, width)
    for _ in range(passes):
        dy = random.integers(-delta, delta, batch, height, width)
        dx = random.integers(-delta, delta, batch, height, width)
        source = (rows + dy).clamp(0, height - 1) * width + (cols + dx).clamp(0, width - 1)
        x = x.flatten(2).gather(2, source.flatten(1)[:, None, :].expand(-1, 3, -1)).view_as(x)
    return blur(x, sigma)


def _defocus_blur(x, c, random):
    radius, alias_sigma = c
    reach = max(1, math.ceil(radius))
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float64)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).double()
    disk = disk / disk.sum()
    smoothing = TF.gaussian_blur(disk[None, None], kernel_size=[3, 3], sigma=[alias_sigma] * 2)[0, 0]
    return filter_channels(x, (smoothing / smoothing.sum()).float())


def _motion_blur(x, c, random):
    radius, sigma = c
    return motion_blur_batch(x, radius, sigma, random.uniform(x.shape[0], low=-45, high=45))


def _zoom_blur(x, c, random):
    factors = torch.arange(1.0, c, 0.01).tolist()
    return (x + sum(zoom_centre(x, factor) for factor in factors)) / (len(factors) + 1)


def _snow(x, c, random):
    mean, std, zoom, threshold, radius, sigma, blend = c
    batch, _, height, width = x.shape
    flakes = zoom_centre(random.normal(batch, 1, height, width, mean=mean, std=std), zoom)
    flakes = torch.where(flakes < threshold, 0, flakes).clamp(0, 1)
    flakes = motion_blur_batch(flakes, radius, sigma, random.uniform(batch, low=-135, high=-45))
    whitened = blend * x + (1 - blend) * torch.maximum(x, grey(x) * 1.5 + 0.5)
    return whitened + flakes + flakes.flip(-1, -2)


def _frost(x, c, random):
    image_weight, frost_weight = c
    return image_weight * x + frost_weight * frost_texture(x.shape[0], x.shape[2], x.shape[3], random)


def _fog(x, c, random):
    strength, decay = c
    batch, _, height, width = x.shape
    size = 1 << (max(height, width) - 1).bit_length()  # the next power of two
    layer = plasma_fractal(batch, size, decay, random)[:, None, :height, :width]
    brightest = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * layer) * brightest / (brightest + strength)


def _spatter(x, c, random):
    mean, std, sigma, threshold, intensity, mud = c
    batch, _, height, width = x.shape
    liquid = blur(random.normal(batch, 1, height, width, mean=mean, std=std), sigma)
    liquid = torch.where(liquid < threshold, 0, liquid)
    if not mud:  # water: bright cyan droplets
        drops = liquid / liquid.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12) * intensity
        water = torch.tensor([175, 238, 238], device=x.device)[None, :, None, None] / 255
        return x + drops * water
    mask = blur((liquid > threshold).to(x), intensity)
    mask = torch.where(mask < 0.8, 0, mask)
    colour = torch.tensor([63, 42, 20], device=x.device)[None, :, None, None] / 255
    return x * (1 - mask) + colour * mask


def _contrast(x, c, random):
    """Pull every channel towards its own spatial mean."""
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * c + means


def _brightness(x, c, random):
    """HSV value + c with hue and saturation kept: every channel scales by the new value / old value."""
    value, _ = hsv_value_saturation(x)
    new_value = (value + c).clamp(0, 1)
    return torch.where(value > 0, x * new_value / value.clamp_min(1e-12), new_value.expand_as(x))


def _saturate(x, c, random):
    """HSV saturation * a + b with hue and value kept (grey pixels have hue 0, red, as in scikit-image)."""
    scale, shift = c
    value, saturation = hsv_value_saturation(x)
    new_saturation = (saturation * scale + shift).clamp(0, 1)
    coloured = value - (value - x) * new_saturation / saturation.clamp_min(1e-12)
    red_hue = torch.cat([value, value * (1 - new_saturation), value * (1 - new_saturation)], dim=1)
    return torch.where(saturation > 0, coloured, red_hue)


def _elastic_transform(x, c, random):
    """Random affine jitter of three points, then a smooth random displacement field."""
    batch, _, height, width = x.shape
    size = min(height, width)
    alpha, sigma, affine = (value * size for value in c)
    centre = torch.tensor([width // 2, height // 2], dtype=torch.float64)
    reach = size // 3
    anchors = torch.stack([centre + reach, centre + torch.tensor([reach, -reach]), centre - reach])  # (3, 2)
    moved = anchors + random.uniform(batch, 3, 2, low=-affine, high=affine).cpu().double()
    # Affine map taking moved points back to anchors (we sample the source of each output pixel).
    ones = torch.ones(batch, 3, 1, dtype=torch.float64)
    solution = torch.linalg.solve(torch.cat([moved, ones], dim=2), anchors.expand(batch, 3, 2))  # (B, 3, 2)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1)  # (H, W, 3) in (x, y, 1)
    source = torch.einsum("hwk,bkj->bhwj", pixels, solution).float().to(x.device)
    displacement = blur(random.uniform(batch, 2, height, width, low=-1, high=1), sigma) * alpha
    source = source + displacement.permute(0, 2, 3, 1)
    scale = torch.tensor([2.0 / width, 2.0 / height], device=x.device)
    grid = (source + 0.5) * scale - 1
    return sample(x, grid)


def box_weights(size_in: int, size_out: int, device) -> Tensor:
    """(size_out, size_in) weights of PIL's BOX resize: each output pixel averages the input pixels
    whose centres lie within its window, `scale` input pixels wide when shrinking and one pixel wide
    when enlarging (so enlarging repeats pixels)."""
    scale = size_in / size_out
    half = max(scale, 1.0) / 2
    centres = (torch.arange(size_out, dtype=torch.float64)[:, None] + 0.5) * scale
    pixel_centres = torch.arange(size_in, dtype=torch.float64)[None, :] + 0.5
    inside = ((pixel_centres - centres).abs() <= half + 1e-9).double()
    return (inside / inside.sum(dim=1, keepdim=True)).float().to(device)


def box_resize(x: Tensor, height: int, width: int) -> Tensor:
    rows = box_weights(x.shape[-2], height, x.device)
    cols = box_weights(x.shape[-1], width, x.device)
    return torch.einsum("hi,bcij,wj->bchw", rows, x, cols)


def _pixelate(x, c, random):
    height, width = x.shape[-2:]
    return box_resize(box_resize(x, int(height * c), int(width * c)), height, width)


def _jpeg_compression(x, c, random):
    """Round trip through PIL's JPEG encoder at quality c (on the CPU, image by image)."""
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(c))
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(x.device).float() / 255


CORRUPTION_FUNCTIONS: dict[str, Callable] = {name: globals()[f"_{name}"] for name in ALL_CORRUPTIONS}


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Corrupt a batch of uint8 images (B, 3, H, W) on their device; returns uint8 of the same shape."""
    if name not in CORRUPTION_FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; accepted: {', '.join(ALL_CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    random = Randomness(corruption_seed(seed, name, severity), images.device)
    constant = CIFAR_SEVERITY[name][severity - 1]
    corrupted = CORRUPTION_FUNCTIONS[name](images.float() / 255, constant, random)
    return (corrupted.clamp(0, 1) * 255).round().to(torch.uint8)


def _example_classes(count: int) -> tuple[Path, list[Path]]:
    """The CIFAR-10 JPEG pack's test folder (relative to the repository when under it) and its first
    `count` class folders; no classes when the pack is not extracted there."""
    from ..training.data import default_data_dir
    from ..core.paths import REPO_ROOT

    folder = default_data_dir("cifar10_folder") / "test"
    found = REPO_ROOT / folder if not folder.is_absolute() else folder
    classes = sorted(p for p in found.iterdir() if p.is_dir())[:count] if found.is_dir() else []
    return folder, classes if len(classes) == count else []


def example_images(count: int = 4) -> tuple[Tensor, str]:
    """A few test images for figures: real CIFAR-10 when the JPEG pack is under data/, else 32 x 32
    thumbnails cut from the two photographs scikit-learn ships (natural colour and texture, which
    the corruptions act on; the offline digits are grey blobs at 32 x 32).

    Reads just `count` files (one per class) instead of decoding the whole pack; returns the images
    and a description of where they came from (`example_images_note` says it as a sentence, with why).
    """
    _, classes = _example_classes(count)
    if classes:
        pixels = [np.asarray(Image.open(sorted(c.glob("*.jpg"))[0]).convert("RGB")) for c in classes]
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
        return images, f"CIFAR-10 test images ({', '.join(c.name for c in classes)}; JPEG pack)"
    return photo_thumbnails(count), (
        "32x32 crops of scikit-learn's sample photographs (offline default; CIFAR-10 pack not found under data/)"
    )


def example_images_note(count: int = 4) -> str:
    """Which images the corruption figures show and why (Markdown; folder names escaped): a reader who
    followed the README's set-up sees photographs, not CIFAR-10, and should know it and how to change it."""
    import html

    folder, classes = _example_classes(count)
    if classes:
        names = ", ".join(html.escape(c.name) for c in classes)
        return (f"The images below are CIFAR-10 test images, the first of each of the classes {names}, read "
                f"from the JPEG pack in `{html.escape(str(folder))}`.")
    return (f"**The images below are not CIFAR-10.** No CIFAR-10 JPEG pack is extracted in "
            f"`{html.escape(str(folder))}` (the README's set-up, `make book`, does not extract it), so they are "
            f"{count} crops of the two photographs scikit-learn ships, shrunk to CIFAR's 32 $\\times$ 32. To see "
            "CIFAR-10 test images here, extract the pack as the README's study section shows "
            "(`mkdir -p data/cifar10-jpeg && tar xJf ../shared/data/cifar10-jpeg.tar.xz -C data/cifar10-jpeg`) and build "
            "the book again.")


def photo_thumbnails(count: int) -> Tensor:
    """`count` 32 x 32 uint8 thumbnails: square crops across scikit-learn's two sample photographs."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427 x 640 RGB photographs
    thumbnails = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = photo.shape[0] // 2
        step = (photo.shape[1] - side) // max(1, (count + len(photos) - 1) // len(photos))
        left = (index // len(photos)) * step
        crop = Image.fromarray(photo[photo.shape[0] // 4: photo.shape[0] // 4 + side, left: left + side])
        thumbnails.append(np.asarray(crop.resize((32, 32), Image.BILINEAR)))
    return torch.from_numpy(np.stack(thumbnails)).permute(0, 3, 1, 2).contiguous()


def write_cifar_c(
    images: Tensor, labels: Tensor, folder, corruptions=ALL_CORRUPTIONS, seed: int = 0, batch_size: int = 500,
    progress: bool = True,
) -> None:
    """Write `images` corrupted at every severity as a CIFAR-10-C style folder, so every evaluation reads
    the same corrupted images instead of regenerating them: `<name>.npy` holds 5 x N images (N, H, W, 3
    uint8, severity 1 first) and `labels.npy` the N labels five times. Each file is written atomically.
    """
    import os
    from pathlib import Path

    from ..core.progress import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str, array: np.ndarray) -> None:
        temporary = folder / f".{name}.npy.tmp"
        with open(temporary, "wb") as handle:
            np.save(handle, array)
        os.replace(temporary, folder / f"{name}.npy")

    for name in tqdm(corruptions, desc="corrupting the test subset", disable=not progress):
        if (folder / f"{name}.npy").is_file():
            continue
        stack = [
            corrupt(images[start : start + batch_size], name, severity, seed=seed * 100_003 + start)
            for severity in SEVERITIES
            for start in range(0, len(images), batch_size)
        ]
        save(name, torch.cat(stack).permute(0, 2, 3, 1).contiguous().numpy())
    save("labels", labels.repeat(len(SEVERITIES)).numpy())
