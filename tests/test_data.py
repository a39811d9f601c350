"""sharpness.training.data: loaders against the files they read, augmentation against torchvision's per-image ops."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from sharpness.training.data import (
    DATASETS, RandomCropFlip, RandomResizedCropFlip, batches, load_dataset, textbook_batches
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_is_an_rgb_32px_stratified_split(digits):
    assert digits.train_images.shape == (1437, 3, 32, 32) and digits.test_images.shape == (360, 3, 32, 32)
    assert digits.train_images.dtype == torch.uint8 and digits.train_labels.dtype == torch.int64
    assert digits.num_classes == 10 and digits.image_size == 32
    assert torch.equal(digits.train_images[:, 0], digits.train_images[:, 2])  # grey replicated to RGB
    # stratified: every class holds 20% (+-1 image) of its images in the test split
    for label in range(10):
        train, test = (digits.train_labels == label).sum().item(), (digits.test_labels == label).sum().item()
        assert abs(test - 0.2 * (train + test)) <= 1
    assert torch.equal(load_dataset("digits").train_labels, digits.train_labels)  # fixed split


def test_normalise_uses_the_training_statistics(digits):
    x = digits.normalise(digits.train_images)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*cifar10_folder"):
        load_dataset("mnist")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "cifar10_folder", "tiny_imagenet"])
def test_missing_data_says_where_to_put_it(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=r"not found in .*data_dir"):
        load_dataset(name, tmp_path / "nothing-here")


def write_png(image, path):
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def _per_class(images, labels, count):
    """The first `count` images of every class, so that both splits hold all classes."""
    index = torch.cat([torch.nonzero(labels == c).flatten()[:count] for c in range(10)])
    return images[index], labels[index]


def _write_folder(root: Path, images, labels, split: str, names):
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / split / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        write_png(image, str(folder / f"{i:04d}.png"))


def test_image_folder_pack_roundtrips_exactly(tmp_path, digits):
    names = [f"class_{c}" for c in "abcdefghij"]
    train_x, train_y = _per_class(digits.train_images, digits.train_labels, 4)
    test_x, test_y = _per_class(digits.test_images, digits.test_labels, 2)
    _write_folder(tmp_path, train_x, train_y, "train", names)
    _write_folder(tmp_path, test_x, test_y, "test", names)
    loaded = load_dataset("cifar10_folder", tmp_path)
    assert list(loaded.class_names) == names
    # ImageFolder order: by class folder, then file name (our index): rebuild that order by hand
    expected = sorted(range(40), key=lambda i: (names[train_y[i]], i))
    assert torch.equal(loaded.train_images, train_x[expected])
    assert [loaded.class_names[c] for c in loaded.train_labels] == [names[train_y[i]] for i in expected]
    assert len(loaded.test_images) == 20
    assert len(list(tmp_path.glob(".sharpness-cache-v*.pt"))) == 1
    again = load_dataset("cifar10_folder", tmp_path)  # from the cache
    assert torch.equal(again.train_images, loaded.train_images) and again.mean == loaded.mean


@pytest.mark.parametrize("progress", [True, False])
def test_the_one_off_decode_draws_its_bar_only_when_asked(tmp_path, digits, capsys, monkeypatch, progress):
    """`--no-progress` reaches the loader: a logged study's first line is not a decode bar's carriage returns."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    names = [f"class_{c}" for c in "abcdefghij"]
    _write_folder(tmp_path, *_per_class(digits.train_images, digits.train_labels, 1), "train", names)
    _write_folder(tmp_path, *_per_class(digits.test_images, digits.test_labels, 1), "test", names)
    load_dataset("cifar10_folder", tmp_path, progress=progress)
    drawn = capsys.readouterr().err
    assert ("cifar10_folder train" in drawn and "cifar10_folder test" in drawn) if progress else drawn == ""


def test_a_cache_written_by_an_earlier_decoder_is_not_read_and_is_removed(tmp_path, digits):
    from sharpness.training import data

    names = [f"class_{c}" for c in "abcdefghij"]
    for split, count, (images, labels) in (("train", 2, (digits.train_images, digits.train_labels)),
                                           ("test", 1, (digits.test_images, digits.test_labels))):
        _write_folder(tmp_path, *_per_class(images, labels, count), split, names)
    decoded = load_dataset("cifar10_folder", tmp_path)
    current = tmp_path / f"{data.CACHE_PREFIX}{data.CACHE_VERSION}.pt"
    # the same files' cache by an earlier version, whose pixels differ (as 16-bit PNGs clipped to white did)
    earlier = tmp_path / f"{data.CACHE_PREFIX}{data.CACHE_VERSION - 1}.pt"
    torch.save({**torch.load(current, weights_only=True), "train_images": torch.full_like(decoded.train_images, 255)},
               earlier)
    current.unlink()
    newer = tmp_path / f"{data.CACHE_PREFIX}{data.CACHE_VERSION + 1}.pt"  # a newer checkout's, sharing the folder
    newer.write_bytes(b"kept")
    again = load_dataset("cifar10_folder", tmp_path)
    assert torch.equal(again.train_images, decoded.train_images)  # decoded afresh, not read from the earlier cache
    assert current.is_file() and not earlier.exists() and newer.read_bytes() == b"kept"


def test_tiny_imagenet_val_labels_come_from_the_annotations(tmp_path, digits):
    wnids = ["n001", "n002", "n003"]
    for c, wnid in enumerate(wnids):
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(2):
            write_png(digits.train_images[3 * c + i], str(folder / f"{wnid}_{i}.png"))
    (tmp_path / "val" / "images").mkdir(parents=True)
    val_classes = [2, 0, 1, 2]
    lines = []
    for i, c in enumerate(val_classes):
        write_png(digits.test_images[i], str(tmp_path / "val" / "images" / f"val_{i}.png"))
        lines.append(f"val_{i}.png\t{wnids[c]}\t0\t0\t31\t31")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = load_dataset("tiny_imagenet", tmp_path)
    assert data.num_classes == 3 and data.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.test_labels.tolist() == val_classes
    assert torch.equal(data.test_images, digits.test_images[:4])
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)  # ImageNet-pretrained nets


def test_random_crop_flip_matches_torchvision_per_image(digits):
    images = digits.train_images[:16]
    drawn = RandomCropFlip(torch.Generator().manual_seed(3)).draw(16)
    out = RandomCropFlip(torch.Generator().manual_seed(3))(images)
    for image, got, top, left, flip in zip(images, out, *drawn):
        want = TF.crop(TF.pad(image, [4], fill=128), int(top), int(left), 32, 32)
        assert torch.equal(got, TF.horizontal_flip(want) if flip else want)
    assert drawn[2].any() and not drawn[2].all()  # both flip outcomes occur


def test_random_resized_crop_of_the_whole_image_is_identity_or_mirror(digits, monkeypatch):
    monkeypatch.setattr(RandomResizedCropFlip, "_box", lambda self, h, w: (0, 0, w, h))
    images = digits.train_images[:8]
    out = RandomResizedCropFlip(torch.Generator().manual_seed(0))(images)
    for image, got in zip(images, out):
        assert torch.equal(got, image) or torch.equal(got, image.flip(-1))


def test_random_resized_crop_draws_valid_boxes():
    crop = RandomResizedCropFlip(torch.Generator().manual_seed(0))
    for _ in range(200):
        left, top, right, bottom = crop._box(64, 64)
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 64
        assert 0.08 * 64 * 64 * 0.9 <= (right - left) * (bottom - top)


def test_batches_visit_every_image_once_in_randperm_order(digits):
    x_all, y_all = digits.train_images[:100], digits.train_labels[:100]
    got = list(batches(x_all, y_all, 32, data=digits, shuffle_generator=torch.Generator().manual_seed(7)))
    order = torch.randperm(100, generator=torch.Generator().manual_seed(7))
    assert [len(y) for _, y in got] == [32, 32, 32, 4]
    assert torch.equal(torch.cat([y for _, y in got]), y_all[order])
    assert torch.equal(torch.cat([x for x, _ in got]), digits.normalise(x_all[order]))
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(x_all, y_all, 0, data=digits))


def test_textbook_loader_matches_resident_batches_without_augmentation(digits):
    x_all, y_all = digits.train_images[:70], digits.train_labels[:70]
    resident = list(batches(x_all, y_all, 32, data=digits, shuffle_generator=torch.Generator().manual_seed(1)))
    loader = textbook_batches(x_all, y_all, 32, data=digits, shuffle_generator=torch.Generator().manual_seed(1),
                              num_workers=0)
    for (x1, y1), (x2, y2) in zip(resident, loader, strict=True):
        assert torch.equal(y1, y2)
        assert torch.allclose(x1, x2, atol=1e-6)


@pytest.mark.skipif(not Path("data/cifar10-jpeg/train").is_dir(), reason="CIFAR-10 JPEG pack not extracted in data/")
def test_real_cifar10_pack_if_extracted():
    data = load_dataset("cifar10_folder")
    assert data.train_images.shape == (50000, 3, 32, 32) and data.test_images.shape == (10000, 3, 32, 32)
    assert data.num_classes == 10 and torch.bincount(data.test_labels).tolist() == [1000] * 10


def test_dataset_list_is_the_contract():
    assert DATASETS == ("digits", "cifar10", "cifar100", "cifar10_folder", "tiny_imagenet")


def test_subset_is_a_fixed_spread_sample(digits):
    by_class = digits.subset(max_train=100, max_test=50)
    again = digits.subset(max_train=100, max_test=50)
    assert len(by_class.train_images) == 100 and len(by_class.test_labels) == 50
    assert torch.equal(by_class.train_labels, again.train_labels)
    sorted_data = digits.subset()  # no limits: everything, unchanged
    assert torch.equal(sorted_data.train_images, digits.train_images)
    # data stored class by class (as ImageFolder does) still gives every class
    order = torch.argsort(digits.train_labels, stable=True)
    from dataclasses import replace
    grouped = replace(digits, train_images=digits.train_images[order], train_labels=digits.train_labels[order])
    assert len(grouped.subset(max_train=100).train_labels.unique()) == 10
    with pytest.raises(ValueError, match="positive"):
        digits.subset(max_train=0)


def test_dataloader_path_augments_each_image_by_the_papers_crop_and_flip(digits):
    from augmentation_checks import is_crop_or_mirror

    from sharpness.training.data import textbook_batches

    images, labels = digits.train_images[:48], digits.train_labels[:48]
    loader = textbook_batches(images, labels, 16, data=digits, augment=True, num_workers=0)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (digits.mean, digits.std))
    seen = torch.cat([((x * std + mean) * 255).round().to(torch.uint8) for x, _ in loader])  # back to pixels
    assert all(is_crop_or_mirror(got, original) for got, original in zip(seen, images))
    assert sum(not torch.equal(got, original) for got, original in zip(seen, images)) > 24  # augmentation is on


def test_tiny_imagenet_crop_boxes_are_distributed_like_torchvisions():
    """Area fraction and aspect ratio of the boxes against torchvision's own RandomResizedCrop(64) draws."""
    from scipy import stats
    from torchvision.transforms import v2

    from sharpness.training.data import augmentation_for

    reference = v2.RandomResizedCrop(64)
    ours = augmentation_for("tiny_imagenet", torch.Generator().manual_seed(0))
    assert (tuple(ours.scale), tuple(ours.ratio)) == (tuple(reference.scale), tuple(reference.ratio))
    torch.manual_seed(0)
    image = torch.zeros(3, 64, 64)
    theirs = [reference.make_params([image]) for _ in range(3000)]
    their_boxes = [(p["width"] * p["height"] / 4096, p["width"] / p["height"]) for p in theirs]
    our_boxes = [((r - l) * (b - t) / 4096, (r - l) / (b - t)) for l, t, r, b in (ours._box(64, 64) for _ in range(3000))]
    for column in (0, 1):
        result = stats.ks_2samp([box[column] for box in our_boxes], [box[column] for box in their_boxes])
        assert result.pvalue > 1e-3, (column, result)
