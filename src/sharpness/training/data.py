"""Image data sets held in memory as uint8 tensors, batched and augmented on whatever device trains.

Every data set in the study is small enough to live in (GPU) memory as uint8: CIFAR-10 is 150 MB,
Tiny ImageNet 1.2 GB. Keeping it there and augmenting whole batches at once removes the per-image
Python work of a DataLoader, which is what limits a ResNet-18 on a modern GPU. The textbook
DataLoader path (`textbook_batches`) stays available for comparison and for data that does not fit.

Randomness is always drawn from an explicit CPU `torch.Generator`, so a seed gives the same data order
and the same augmentations on CPU and GPU, and the order of batches never depends on augmentation.
"""

from __future__ import annotations

import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

# Batch size of forward-only evaluation (test accuracy in training, landscape points): on a CPU 128
# keeps a batch's activations in cache; 1024-2000 measured 1.5-2x slower per image (issue 25).
EVALUATION_BATCH_SIZE = 128

Tensor = torch.Tensor
Augment = Callable[[Tensor], Tensor]

DATASETS = ("digits", "cifar10", "cifar100", "cifar10_folder", "tiny_imagenet")
# Bump when what a decoded folder data set holds changes (older caches are then ignored and removed). 4: 16-bit
# PNGs are scaled to 8 bits, no longer clipped to white, and a cache keyed on unchanged files would keep them.
CACHE_VERSION = 4
CACHE_PREFIX = ".sharpness-cache-v"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

#: Where data sets are looked for when no `data_dir` is given (override with $SHARPNESS_DATA).
DEFAULT_DATA_DIR = Path(os.environ.get("SHARPNESS_DATA", "data"))
_DEFAULT_SUBDIR = {"cifar10": "", "cifar100": "", "cifar10_folder": "cifar10-jpeg", "tiny_imagenet": "tiny-imagenet-200"}
_HOW_TO_GET = {
    "cifar10": "download it once with `load_dataset('cifar10', data_dir, download=True)` "
    "(or `python -m sharpness train --dataset cifar10 --download ...`) on a machine with internet",
    "cifar100": "download it once with `load_dataset('cifar100', data_dir, download=True)` "
    "(or `python -m sharpness train --dataset cifar100 --download ...`) on a machine with internet",
    "cifar10_folder": "extract an ImageFolder pack there, e.g. `mkdir -p data/cifar10-jpeg && "
    "tar xJf ../shared/data/cifar10-jpeg.tar.xz -C data/cifar10-jpeg` (it must hold train/<class>/*.jpg "
    "and test/<class>/*.jpg)",
    "tiny_imagenet": "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it there "
    "(it must hold wnids.txt, train/<wnid>/images/*.JPEG and val/val_annotations.txt)",
}


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test split as uint8 images (N, 3, H, W) plus the statistics to normalise them."""

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 images -> float images with the training set's per-channel mean 0 and std 1."""
        mean, std = _channel_tensor(self.mean, images.device), _channel_tensor(self.std, images.device)
        return (images.float() / 255.0 - mean) / std

    def subset(self, max_train: int | None = None, max_test: int | None = None) -> "ImageData":
        """A fixed random `max_train` / `max_test` images (for quick runs), the same for every run and seed.

        Random rather than the first N because folder data sets are stored class by class.
        Statistics are kept unchanged.
        """
        def pick(count: int, limit: int | None) -> Tensor | slice:
            if limit is None or limit >= count:
                return slice(None)
            if limit < 1:
                raise ValueError(f"sample limits must be positive integers or None, got {limit!r}")
            return torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit].sort().values

        train, test = pick(len(self.train_images), max_train), pick(len(self.test_images), max_test)
        return replace(
            self,
            train_images=self.train_images[train],
            train_labels=self.train_labels[train],
            test_images=self.test_images[test],
            test_labels=self.test_labels[test],
        )

    def to(self, device: torch.device | str) -> "ImageData":
        """The same data with its tensors on `device` (GPU-resident training)."""
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return replace(
            self,
            train_images=move(self.train_images),
            train_labels=move(self.train_labels),
            test_images=move(self.test_images),
            test_labels=move(self.test_labels),
        )


@functools.lru_cache(maxsize=32)
def _channel_tensor(values: tuple[float, ...], device: torch.device) -> Tensor:
    """Per-channel constants as a (1, C, 1, 1) tensor, made once per device (not one copy per batch)."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
                 progress: bool = True) -> ImageData:
    """Load data set `name` (one of DATASETS) into memory.

    `data_dir` is where it lives (default: data/ and a per-set folder below it, see `default_data_dir`);
    "digits" needs no files. `download=True` lets torchvision fetch CIFAR-10/100 when online.
    A missing data set raises FileNotFoundError saying where to put it and how to get it. `progress` draws a
    bar while an image folder is decoded (once; later loads read the cache).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()
    root = Path(data_dir) if data_dir is not None else default_data_dir(name)
    if name in ("cifar10", "cifar100"):
        return _load_torchvision_cifar(name, root, download)
    if name == "cifar10_folder":
        return _cached(root, lambda: _load_image_folders(name, root, root / "train", root / "test", progress))
    return _cached(root, lambda: _load_tiny_imagenet(root, progress))


def default_data_dir(name: str) -> Path:
    """The folder `load_dataset(name)` reads when no data_dir is given."""
    return DEFAULT_DATA_DIR / _DEFAULT_SUBDIR.get(name, name)


def _missing(name: str, root: Path, detail: str = "") -> FileNotFoundError:
    detail = f" ({detail})" if detail else ""
    return FileNotFoundError(
        f"data set {name!r} not found in {str(root)!r}{detail}: {_HOW_TO_GET[name]}, "
        f"or pass data_dir=/path/to/it (CLI: --data-dir)."
    )


def _channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the 0-1 scale, in float64, chunked to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block**2).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _make(name, train_images, train_labels, test_images, test_labels, class_names) -> ImageData:
    mean, std = _channel_stats(train_images)
    return ImageData(
        name=name,
        train_images=train_images.contiguous(),
        train_labels=train_labels.to(torch.int64),
        test_images=test_images.contiguous(),
        test_labels=test_labels.to(torch.int64),
        num_classes=len(class_names),
        mean=mean,
        std=std,
        class_names=tuple(class_names),
    )


def _load_digits() -> ImageData:
    """scikit-learn's 1,797 8x8 digits (shipped inside the package), as 32x32 RGB, fixed 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    large = F.interpolate(small, size=32, mode="bilinear", align_corners=False)
    images = large.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    labels = torch.tensor(digits.target)
    train_index, test_index = train_test_split(
        range(len(labels)), test_size=0.2, stratify=digits.target, random_state=0
    )
    train_index, test_index = torch.tensor(train_index), torch.tensor(test_index)
    return _make(
        "digits", images[train_index], labels[train_index], images[test_index], labels[test_index],
        [str(d) for d in range(10)],
    )


def _load_torchvision_cifar(name: str, root: Path, download: bool) -> ImageData:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise _missing(name, root, str(error)) from None
    as_tensor = lambda d: torch.from_numpy(d.data).permute(0, 3, 1, 2)  # noqa: E731  N,H,W,C -> N,C,H,W
    return _make(
        name, as_tensor(train), torch.tensor(train.targets), as_tensor(test), torch.tensor(test.targets), train.classes
    )


def _rgb8(image, path: str):
    """An opened Pillow image as 8-bit RGB (H, W, 3). 16-bit greyscale (PNG) is scaled to 0-255; Pillow's own
    convert("RGB") clips it (every value above 255 becomes white). Pixels of 32-bit integers or floats have no
    known range: refused, naming the file."""
    import numpy as np

    sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")
    if sixteen_bit:
        values = np.asarray(image).astype(np.uint32)
        if values.max(initial=0) > 65535:
            raise ValueError(f"{values.max()} exceeds 16 bits")
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise ValueError(f"its pixels are 32-bit {'integers' if image.mode == 'I' else 'floats'} (mode {image.mode}) with "
                         "no known range; save it as an 8-bit image")
    return np.asarray(image.convert("RGB"))


def _decode_all(paths: Sequence[str], desc: str, progress: bool = True) -> Tensor:
    """Decode image files (with Pillow) to one uint8 (N, 3, H, W) tensor; all must share one size."""
    import numpy as np
    from PIL import Image
    from ..core.progress import tqdm

    def decode(path: str) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return _rgb8(image, path)
        except (OSError, ValueError) as error:  # truncated, empty or not an image
            raise ValueError(f"cannot decode the image {path} ({error}): replace it with a good copy or delete it, "
                             "then load the data set again") from None

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        arrays = list(tqdm(pool.map(decode, paths, chunksize=256), total=len(paths), desc=desc, leave=False,
                           disable=not progress))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images in {desc} have different sizes {sorted(sizes)[:4]}...; resize them to one size first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _load_image_folders(name: str, root: Path, train_dir: Path, test_dir: Path, progress: bool = True) -> ImageData:
    """An ImageFolder pack: train/<class>/*.jpg and test/<class>/*.jpg with the same classes."""
    from torchvision.datasets import ImageFolder

    from torchvision.datasets.folder import IMG_EXTENSIONS

    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise _missing(name, root, f"no folder {folder.name}/")
        for class_dir in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
            if not any(path.suffix.lower() in IMG_EXTENSIONS for path in class_dir.rglob("*") if path.is_file()):
                raise ValueError(f"the class folder {class_dir} holds no images ({', '.join(IMG_EXTENSIONS)}): put that "
                                 f"class's images in it, or remove the class from both {train_dir} and {test_dir}")
    train, test = ImageFolder(str(train_dir)), ImageFolder(str(test_dir))
    if train.classes != test.classes:
        raise ValueError(f"{train_dir} and {test_dir} have different class folders: {train.classes} vs {test.classes}")
    return _make(
        name,
        _decode_all([p for p, _ in train.samples], f"{name} train", progress),
        torch.tensor(train.targets),
        _decode_all([p for p, _ in test.samples], f"{name} test", progress),
        torch.tensor(test.targets),
        train.classes,
    )


def _load_tiny_imagenet(root: Path, progress: bool = True) -> ImageData:
    """Tiny ImageNet 200: the labelled val split (sorted by the annotations file) serves as the test set.

    Normalised with ImageNet's statistics, as the pretrained networks it is used with expect.
    """
    from torchvision.datasets import ImageFolder

    annotations = root / "val" / "val_annotations.txt"
    if not (root / "train").is_dir() or not annotations.is_file():
        raise _missing("tiny_imagenet", root, "no train/ folder or val/val_annotations.txt")
    train = ImageFolder(str(root / "train"))
    class_index = train.class_to_idx
    val_files, val_labels = [], []
    for line in annotations.read_text().splitlines():
        if line.strip():
            filename, wnid = line.split("\t")[:2]
            val_files.append(str(root / "val" / "images" / filename))
            val_labels.append(class_index[wnid])
    data = _make(
        "tiny_imagenet",
        _decode_all([p for p, _ in train.samples], "tiny_imagenet train", progress),
        torch.tensor(train.targets),
        _decode_all(val_files, "tiny_imagenet val", progress),
        torch.tensor(val_labels),
        train.classes,
    )
    # The study fine-tunes ImageNet-pretrained networks here: feed them inputs scaled as in their pretraining.
    return replace(data, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def folder_fingerprint(root: Path) -> str:
    """A hash of the path, size and modification time of every file below `root` (caches aside): it changes
    when an image or class is added, removed or rewritten."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if not name.startswith(CACHE_PREFIX):
                path = Path(folder, name)
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cached(root: Path, build: Callable[[], ImageData]) -> ImageData:
    """Decode a folder of image files once; later loads read one tensor file written beside it, as long as
    the folder's files are the ones it was made from (else, or if it is damaged, it is made again)."""
    from ..core.runs import RunFileError, atomic_save

    cache = root / f"{CACHE_PREFIX}{CACHE_VERSION}.pt"
    fingerprint = folder_fingerprint(root)
    if cache.is_file():
        try:
            stored = torch.load(cache, weights_only=True)
        except Exception:  # damaged (e.g. a full disk when it was written by hand): decode again
            stored = {}
        if stored.pop("fingerprint", None) == fingerprint:
            return ImageData(**stored)
    data = build()
    try:
        atomic_save({**vars(data), "fingerprint": fingerprint}, cache)
        for other in root.glob(f"{CACHE_PREFIX}*.pt"):  # earlier versions' caches: never read again (a newer
            version = other.name[len(CACHE_PREFIX):-len(".pt")]  # one belongs to a newer checkout sharing the folder)
            if version.isdigit() and int(version) < CACHE_VERSION:
                other.unlink(missing_ok=True)
    except (RunFileError, OSError):  # a read-only data folder: decoding again next time is only slower
        pass
    return data


# ----------------------------------------------------------------------------------------------------------
# Batches and augmentation


def batches(
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    *,
    data: ImageData,
    augment: Augment | None = None,
    shuffle_generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (normalised float images, labels) batches on `device` (default: where `images` live).

    The order is `torch.randperm(N, generator=shuffle_generator)` (sequential without a generator);
    `augment` maps a uint8 batch to a uint8 batch on the same device and draws from its own generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device) if device is not None else images.device
    count = len(images)
    order = None
    if shuffle_generator is not None:  # drawn on the CPU (device-independent), moved once
        order = torch.randperm(count, generator=shuffle_generator).to(images.device)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        if order is None:
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            x, y = images[index], labels[index]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        yield data.normalise(x), y


class RandomCropFlip:
    """Batched RandomCrop(size, padding, fill) + RandomHorizontalFlip(0.5) on uint8 images, any device.

    Matches torchvision's per-image transforms (the CIFAR augmentation of the paper) but does a whole
    batch with one gather; offsets and flips come from a CPU generator so CPU and GPU agree.
    """

    def __init__(self, generator: torch.Generator, padding: int = 4, fill: int = 128):
        self.generator, self.padding, self.fill = generator, padding, fill

    def draw(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """Random (top, left, flip) per image: the parameters `__call__` will use."""
        span = 2 * self.padding + 1
        top = torch.randint(0, span, (count,), generator=self.generator)
        left = torch.randint(0, span, (count,), generator=self.generator)
        flip = torch.rand(count, generator=self.generator) < 0.5
        return top, left, flip

    def __call__(self, images: Tensor) -> Tensor:
        count, channels, height, width = images.shape
        top, left, flip = torch.stack(self.draw(count)).to(images.device)  # one host-to-device copy
        p = self.padding
        padded = F.pad(images, (p, p, p, p), value=self.fill)
        rows = top[:, None] + torch.arange(height, device=images.device)
        cols = left[:, None] + torch.arange(width, device=images.device)
        cols = torch.where(flip.bool()[:, None], cols.flip(1), cols)
        batch = torch.arange(count, device=images.device)[:, None, None, None]
        chan = torch.arange(channels, device=images.device)[None, :, None, None]
        return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


class RandomResizedCropFlip:
    """Batched RandomResizedCrop(size) + RandomHorizontalFlip(0.5) (the Tiny ImageNet augmentation).

    Boxes are drawn like torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, ten tries, then
    the centre crop); all crops are resized at once, bilinearly, with torchvision.ops.roi_align.
    """

    def __init__(self, generator: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.generator, self.scale, self.ratio = generator, scale, ratio

    def _box(self, height: int, width: int) -> tuple[float, float, float, float]:
        area = height * width
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(*self.scale, generator=self.generator).item()
            aspect = torch.exp(torch.empty(1).uniform_(*log_ratio.tolist(), generator=self.generator)).item()
            w, h = round((target * aspect) ** 0.5), round((target / aspect) ** 0.5)
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, (1,), generator=self.generator).item()
                left = torch.randint(0, width - w + 1, (1,), generator=self.generator).item()
                return left, top, left + w, top + h
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return left, top, left + side, top + side

    def __call__(self, images: Tensor) -> Tensor:
        from torchvision.ops import roi_align

        count, _, height, width = images.shape
        boxes = torch.tensor([self._box(height, width) for _ in range(count)], dtype=torch.float32)
        flip = torch.rand(count, generator=self.generator) < 0.5
        rois = torch.cat([torch.arange(count, dtype=torch.float32)[:, None], boxes], dim=1).to(images.device)
        crops = roi_align(images.float(), rois, output_size=(height, width), spatial_scale=1.0, sampling_ratio=1, aligned=True)
        crops = torch.where(flip.to(images.device)[:, None, None, None], crops.flip(-1), crops)
        return crops.round().clamp(0, 255).to(torch.uint8)


def augmentation_for(name: str, generator: torch.Generator) -> Augment:
    """The paper's training augmentation for data set `name`, drawing from `generator`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return RandomResizedCropFlip(generator) if name == "tiny_imagenet" else RandomCropFlip(generator)


class _TransformedImages(torch.utils.data.Dataset):
    """Per-image torchvision transforms, the textbook way (used by `textbook_batches`)."""

    def __init__(self, images: Tensor, labels: Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def textbook_batches(
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    *,
    data: ImageData,
    augment: bool = False,
    shuffle_generator: torch.Generator | None = None,
    num_workers: int = 4,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A torch DataLoader with per-image torchvision v2 transforms: the baseline for the benchmark.

    With the same `shuffle_generator` state it visits images in the same order as `batches`
    (both use randperm); augmentation randomness comes from the workers' seeds instead.
    """
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
    from torchvision.transforms import v2

    steps = []
    if augment:
        if data.name == "tiny_imagenet":
            steps += [v2.RandomResizedCrop(data.image_size, antialias=True)]
        else:
            steps += [v2.RandomCrop(data.image_size, padding=4, fill=128)]
        steps += [v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))]
    dataset = _TransformedImages(images, labels, v2.Compose(steps))
    sampler = RandomSampler(dataset, generator=shuffle_generator) if shuffle_generator else SequentialSampler(dataset)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=False,
    )
