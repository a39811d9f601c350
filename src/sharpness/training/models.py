"""The networks of the study, built from torchvision parts where torchvision has them.

- "resnet18": CIFAR ResNet-18 (torchvision's, with a 3x3 stride-1 stem and no max-pool), 21 weight layers.
- "vgg19" / "vgg19_bn": the 16 VGG-19 convolutions, then Linear(512, 512) (+BN) + ReLU and a linear
  classifier, as in the paper's code (18 weight layers); the paper's "VGG19" is the BN variant.
- "vit": a ViT for small data sets (shifted-patch tokenisation, locality self-attention; 4x4 patches,
  width 512, depth 6, 6 heads of 64, MLP 256), 26 weight layers, the paper's configuration.
- "simple_cnn": three small conv blocks and a linear head (24k parameters), for CPU runs, tests and the book.
- "cnn_mlp": the same conv blocks, flattened into a 128-unit hidden layer (156k parameters, 5 weight layers):
  the network of the real CIFAR-10 study on a CPU, because it reaches a training minimum (>= 99% train
  accuracy on 10k images) in 30 epochs, where simple_cnn's pooled head stalls near 75%.
- "resnet_small", "vgg_small", "vit_small": one CPU-sized network per family beside cnn_mlp_wide (the paper's
  three families, for its claims across architectures): a ResNet-8 (BasicBlocks, BN, skips; widths 24/48/96,
  174k parameters), a VGG-8 plain stack with BN (16-16-M-32-32-M-64-64-M, fc 128; 205k), a ViT with shifted
  4x4 patches (width 64, 3 blocks, 2 heads of 32, MLP 128; 121k). Measured on one thread (`bench/families.py`),
  relative to cnn_mlp_wide per SGD step / SAM step / image forward: 1.46 / 1.60 / 1.98, 0.63 / 0.71 / 0.63,
  1.03 / 1.10 / 1.40; with the study's measured run times that is about 2.7 h, 1.0 h and 1.9 h for 6 controls
  x 3 seeds on two cores (`sharpness.studies.cpu_families.FAMILY_COST`, `plan_hours`). The ResNet is 1.5x wider than
  the 16/32/64 first measured (0.77 / 0.95 / 1.07, 1.5 h): its pooled head must fit 800 augmented images in
  840 steps, where simple_cnn's pooled head stalled, and the budget had room.
- "resnet18_imagenet" / "vgg19_bn_imagenet": torchvision's ImageNet networks and weights with a new
  `num_classes` head (Tiny ImageNet); the weights come from a local file or torch's hub cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

ARCHS = ("resnet18", "vgg19", "vgg19_bn", "vit", "simple_cnn", "cnn_mlp", "cnn_mlp_wide", "cnn_mlp_h1024", "resnet18_imagenet", "vgg19_bn_imagenet")
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)

# The three CPU-sized families (ResNet with BN and skips; VGG-style plain conv stack with BN; ViT with 4x4
# patches): settings here, sizes and measured costs in sharpness.studies.cpu_families.
SMALL_RESNET_WIDTHS = (24, 48, 96)  # one BasicBlock per stage: a "ResNet-8" at 1.5x ResNet-20's widths
SMALL_VGG_CONFIG = (16, 16, "M", 32, 32, "M", 64, 64, "M")  # torchvision make_layers notation; "M" = 2x2 max-pool
SMALL_VGG_HEAD = 128
SMALL_VIT = {"dim": 64, "depth": 3, "heads": 2, "head_dim": 32, "mlp_dim": 128}
EMBEDDING_INIT_STD = 0.02  # the ViT's class token and position embeddings (see SmallViT)
ARCHS += ("resnet_small", "vgg_small", "vit_small")


def initial_weight_norm(arch: str, seed: int = 0, num_classes: int = 10) -> float:
    """||theta_0||, the norm of the parameters SAM perturbs as a run from scratch with `seed` starts: what a
    SAM radius is measured against."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes, pretrained=False)
    return float(torch.sqrt(sum(p.detach().double().square().sum() for p in model.parameters())))


def build_model(
    arch: str,
    num_classes: int,
    image_size: int = 32,
    *,
    pretrained: bool = True,
    pretrained_weights: str | os.PathLike | None = None,
) -> nn.Module:
    """A freshly initialised `arch` with `num_classes` outputs (initialisation uses torch's global RNG).

    For the *_imagenet archs `pretrained_weights` is a state-dict file; by default the torchvision
    ImageNet weights are looked up in torch's hub cache, and a clear FileNotFoundError says how to
    fetch them when they are absent (nothing is downloaded here). `pretrained=False` skips them
    (for loading a trained checkpoint over the network).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if arch == "resnet18":
        return _cifar_resnet18(num_classes)
    if arch in ("vgg19", "vgg19_bn"):
        return CifarVGG(num_classes, batch_norm=arch == "vgg19_bn", image_size=image_size)
    if arch == "vit":
        return SmallViT(num_classes, image_size=image_size)
    if arch == "simple_cnn":
        return SimpleCNN(num_classes)
    if arch == "cnn_mlp":
        return CnnMlp(num_classes, image_size=image_size)
    if arch == "resnet_small":
        return SmallResNet(num_classes, SMALL_RESNET_WIDTHS)
    if arch == "vgg_small":
        return CifarVGG(num_classes, batch_norm=True, image_size=image_size, config=SMALL_VGG_CONFIG, width=SMALL_VGG_HEAD)
    if arch == "vit_small":
        return SmallViT(num_classes, image_size=image_size, **SMALL_VIT)
    if arch == "cnn_mlp_h1024":
        return CnnMlp(num_classes, image_size=image_size, hidden=1024)
    if arch == "cnn_mlp_wide":
        return CnnMlp(num_classes, image_size=image_size, widths=(32, 64, 128), hidden=256)
    return _imagenet_model(arch, num_classes, pretrained, pretrained_weights)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer (whose weights relative flatness is measured on)."""
    for name in ("classifier", "fc", "head"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Linear):
            return layer
        if isinstance(layer, nn.Sequential) and isinstance(layer[-1], nn.Linear):
            return layer[-1]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return linears[-1]


def count_weight_layers(model: nn.Module) -> int:
    """Number of Linear/Conv/Embedding modules: the L of the Fisher-Rao norm's (L+1) factor."""
    return sum(isinstance(m, WEIGHT_LAYERS) for m in model.modules())


# ----------------------------------------------------------------------------------------------------------


def _cifar_resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: 32x32 inputs keep their resolution into layer1."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


class CifarVGG(nn.Module):
    """VGG convolutions (torchvision's `make_layers`; default VGG-19's) with the paper's small fully connected
    head: flatten, Linear(.., width) (+BN) + ReLU, and a linear classifier."""

    def __init__(self, num_classes: int, batch_norm: bool, image_size: int = 32, width: int = 512,
                 config: tuple | None = None):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        config = list(cfgs["E"] if config is None else config)
        self.features = make_layers(config, batch_norm=batch_norm)
        pools = config.count("M")
        spatial = image_size // 2**pools  # each "M" is a 2x2 max-pool
        if spatial < 1:
            raise ValueError(f"this VGG needs images of at least {2**pools} pixels, got image_size={image_size}")
        channels = [c for c in config if c != "M"][-1]
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * spatial * spatial, width),
            nn.BatchNorm1d(width) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x)))


class SmallResNet(nn.Module):
    """A CIFAR ResNet of torchvision BasicBlocks, one per stage: 3x3 stem (BN, ReLU) at full resolution, stages
    at `widths` (the later ones halve the resolution, with a 1x1 conv + BN on the skip), global average
    pooling and a linear classifier. He et al.'s CIFAR ResNet-20 has widths (16, 32, 64) and three blocks per stage."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = SMALL_RESNET_WIDTHS):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        blocks, channels = [], widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            skip = None if stride == 1 and channels == width else nn.Sequential(
                nn.Conv2d(channels, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
            blocks.append(BasicBlock(channels, width, stride=stride, downsample=skip))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))))


class ShiftedPatchTokens(nn.Module):
    """Shifted patch tokenisation (Lee et al. 2021): each patch also sees its four half-patch shifts."""

    def __init__(self, dim: int, patch_size: int, channels: int = 3):
        super().__init__()
        self.patch_size = patch_size
        patch_dim = 5 * channels * patch_size * patch_size
        self.norm = nn.LayerNorm(patch_dim)
        self.project = nn.Linear(patch_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifts = ((1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1))
        stacked = torch.cat([x] + [nn.functional.pad(x, s) for s in shifts], dim=1)
        p = self.patch_size
        patches = nn.functional.unfold(stacked, kernel_size=p, stride=p).transpose(1, 2)  # (B, tokens, C*p*p)
        return self.project(self.norm(patches))


class LocalitySelfAttention(nn.Module):
    """Multi-head self-attention with a learned temperature and the diagonal masked (Lee et al. 2021)."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.log_temperature = nn.Parameter(torch.tensor(head_dim**-0.5).log())
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * self.log_temperature.exp()
        self_mask = torch.eye(tokens, device=x.device, dtype=torch.bool)
        scores = scores.masked_fill(self_mask, torch.finfo(scores.dtype).min)
        mixed = scores.softmax(dim=-1) @ v
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, -1))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = LocalitySelfAttention(dim, heads, head_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class SmallViT(nn.Module):
    """Vision transformer for small images (class token, pre-norm blocks, linear classifier).

    The class token and position embeddings start at N(0, 0.02^2), as in the original ViT and timm, not N(0, 1):
    at unit scale they outweigh the patch tokens (about 0.6 after the projection) in the residual stream, and the
    network fits its images more slowly: under the CPU study's protocol (800 augmented CIFAR-10 images, SGD lr
    0.05, 40 epochs) vit_small fitted 43% of them from the small start against 35% from the unit one (a width of
    96 reached 48%, six blocks 41%, lr 0.1 and 0.2 38% and 37%; 2026-12-01, one run each; `bench/vit_fit.py`).
    """

    def __init__(self, num_classes: int, image_size: int = 32, patch_size: int = 4, dim: int = 512,
                 depth: int = 6, heads: int = 6, head_dim: int = 64, mlp_dim: int = 256):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        tokens = (image_size // patch_size) ** 2
        self.tokenise = ShiftedPatchTokens(dim, patch_size)
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * EMBEDDING_INIT_STD)
        self.position = nn.Parameter(torch.randn(1, tokens + 1, dim) * EMBEDDING_INIT_STD)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, head_dim, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenise(x)
        tokens = torch.cat([self.class_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.position
        return self.classifier(self.norm(self.blocks(tokens)[:, 0]))


def conv_blocks(widths: tuple[int, ...], channels: int = 3) -> list[nn.Module]:
    """Conv(3x3, no bias)-BN-ReLU-MaxPool(2) per width: each block halves the resolution."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = width
    return layers


class SimpleCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks (16, 32, 64 channels) and a linear classifier: fast on a CPU."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.features = nn.Sequential(*conv_blocks(widths), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CnnMlp(nn.Module):
    """SimpleCNN's conv blocks, flattened (no global pooling) into a ReLU hidden layer, then a linear classifier.

    Keeping the spatial map gives the head enough capacity to fit 10k CIFAR images on a CPU budget; the
    hidden layer is the feature vector relative flatness is measured on.
    """

    def __init__(self, num_classes: int, image_size: int = 32, widths: tuple[int, ...] = (16, 32, 64), hidden: int = 128):
        super().__init__()
        spatial = image_size // 2 ** len(widths)
        if spatial < 1:
            raise ValueError(f"cnn_mlp needs images of at least {2 ** len(widths)} pixels, got image_size={image_size}")
        self.features = nn.Sequential(*conv_blocks(widths), nn.Flatten(),
                                      nn.Linear(widths[-1] * spatial * spatial, hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _imagenet_model(
    arch: str, num_classes: int, pretrained: bool, weights_file: str | os.PathLike | None
) -> nn.Module:
    """torchvision ImageNet network with its pretrained weights and a fresh `num_classes` head."""
    from torchvision import models

    builder, weights = {
        "resnet18_imagenet": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
        "vgg19_bn_imagenet": (models.vgg19_bn, models.VGG19_BN_Weights.IMAGENET1K_V1),
    }[arch]
    path = Path(weights_file) if weights_file is not None else imagenet_weights_path(arch)
    if pretrained and not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch!r} not found at {str(path)!r}. Online, fetch them once with "
            f"`python -c \"import torchvision; torchvision.models.{builder.__name__}(weights='IMAGENET1K_V1')\"` "
            f"(they land in torch's hub cache, {str(imagenet_weights_path(arch).parent)!r}), or download "
            f"{weights.url} and pass pretrained_weights=/path/to/file."
        )
    model = builder()
    if pretrained:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if arch == "resnet18_imagenet":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches the ImageNet weights of `arch` (torch.hub's checkpoints folder)."""
    from torchvision import models

    weights = {"resnet18_imagenet": models.ResNet18_Weights.IMAGENET1K_V1,
               "vgg19_bn_imagenet": models.VGG19_BN_Weights.IMAGENET1K_V1}
    if arch not in weights:
        raise ValueError(f"no ImageNet weights for arch {arch!r}; choose one of {', '.join(weights)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights[arch].url).name
