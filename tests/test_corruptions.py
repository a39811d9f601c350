"""Generated corruptions: deterministic, visibly changing, stronger with severity where they should be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sharpness.measuring import corruptions


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Blocky colour images with some texture: edges for the blurs, mid-tones for the colour changes."""
    generator = torch.Generator().manual_seed(0)
    blocks = F.interpolate(torch.rand(8, 3, 8, 8, generator=generator), size=(32, 32), mode="nearest")
    texture = torch.rand(8, 3, 32, 32, generator=generator)
    return ((0.8 * blocks + 0.2 * texture) * 255).round().to(torch.uint8)


def mean_change(images, name, severity, seed=0) -> float:
    return float((corruptions.corrupt(images, name, severity, seed).float() - images.float()).abs().mean())


def test_names_and_counts():
    assert len(corruptions.STANDARD_CORRUPTIONS) == 15 and len(corruptions.EXTRA_CORRUPTIONS) == 4
    assert set(corruptions.CIFAR_SEVERITY) == set(corruptions.ALL_CORRUPTIONS)
    assert all(len(values) == 5 for values in corruptions.CIFAR_SEVERITY.values())


@pytest.mark.parametrize("name", corruptions.ALL_CORRUPTIONS)
def test_each_corruption_is_deterministic_and_changes_images(images, name):
    first = corruptions.corrupt(images, name, 3, seed=0)
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, corruptions.corrupt(images, name, 3, seed=0))
    # Severity 1 is the mildest setting; even it must change the images visibly (> 1 grey level on average).
    assert mean_change(images, name, 1) > 1.0, name


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "fog", "spatter"])
def test_random_corruptions_depend_on_the_seed(images, name):
    assert not torch.equal(corruptions.corrupt(images, name, 3, seed=0), corruptions.corrupt(images, name, 3, seed=1))


# Corruptions whose mean absolute change must grow with severity. The others are not monotone in this
# statistic by construction of the published constants: saturate first lowers then raises saturation,
# elastic_transform trades affine jitter for local warping, spatter switches from water to mud at 4,
# frost lowers the frost weight relative to the image at 4-5, glass_blur and defocus_blur change kernel
# shape rather than size between some levels; pixelate (monotone on CIFAR images) depends on how its
# grid meets the 4-pixel blocks of these test images.
MONOTONE = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "motion_blur",
    "zoom_blur", "fog", "brightness", "contrast", "jpeg_compression",
)  # fmt: skip


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_increases_mean_change(images, name):
    changes = [mean_change(images, name, severity) for severity in corruptions.SEVERITIES]
    assert all(later >= earlier for earlier, later in zip(changes, changes[1:])), (name, changes)
    assert changes[-1] > 1.3 * changes[0], (name, changes)


def test_contrast_and_brightness_match_hand_computations():
    image = torch.tensor([[[[0, 100]], [[50, 210]], [[250, 10]]]], dtype=torch.uint8)  # one 1x2 image
    # Contrast 0.5 halves each channel's distance to its own mean (50, 130, 130).
    expected = torch.tensor([[[[25, 75]], [[90, 170]], [[190, 70]]]], dtype=torch.uint8)
    assert torch.equal(corruptions.corrupt(image, "contrast", 2), expected)
    x = image.float() / 255
    # Brightness adds c to the HSV value and keeps hue and saturation: pixel (0, 50, 250)/255 has value
    # 250/255, so every channel scales by (250/255 + 0.1) / (250/255), clipped at value 1.
    value = x.amax(dim=1, keepdim=True)
    scaled = x * (value + 0.1).clamp(max=1) / value
    assert torch.equal(corruptions.corrupt(image, "brightness", 2), scaled.mul(255).round().to(torch.uint8))


def test_bad_names_and_severities_are_refused(images):
    with pytest.raises(ValueError, match="accepted: gaussian_noise"):
        corruptions.corrupt(images, "rain", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        corruptions.corrupt(images, "fog", 6)
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(images.float(), "fog", 1)


@pytest.mark.parametrize("severity", corruptions.SEVERITIES)
def test_pixelate_matches_pil_box_resizing(images, severity):
    """The published pixelate is PIL's BOX resize down and back up; ours agrees to rounding."""
    import numpy as np
    from PIL import Image

    factor = corruptions.CIFAR_SEVERITY["pixelate"][severity - 1]
    ours = corruptions.corrupt(images, "pixelate", severity).permute(0, 2, 3, 1).numpy().astype(int)
    for image, mine in zip(images.permute(0, 2, 3, 1).numpy(), ours):
        small = Image.fromarray(image).resize((int(32 * factor),) * 2, Image.Resampling.BOX)
        reference = np.asarray(small.resize((32, 32), Image.Resampling.BOX)).astype(int)
        assert np.abs(reference - mine).max() <= 1


def test_example_images_fall_back_to_photo_thumbnails_without_the_pack(monkeypatch, tmp_path):
    import sharpness.training.data

    monkeypatch.setattr(sharpness.training.data, "default_data_dir", lambda name: tmp_path / "absent")
    images, source = corruptions.example_images(4)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert "sample photographs" in source
    flat = images.reshape(4, -1).float()
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 100  # four different pictures
    assert images.float().std(dim=(2, 3)).mean() > 10  # texture for the corruptions to act on
    assert "not CIFAR-10" in corruptions.example_images_note(4)  # the page says so, and why


def test_example_images_note_names_the_cifar_classes_shown_when_the_pack_is_there(monkeypatch, tmp_path):
    import numpy as np
    from PIL import Image

    import sharpness.training.data

    for name in ("airplane", "automobile", "bird", "cat", "deer"):
        (tmp_path / "pack" / "test" / name).mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(tmp_path / "pack" / "test" / name / "0.jpg")
    monkeypatch.setattr(sharpness.training.data, "default_data_dir", lambda name: tmp_path / "pack")
    note = corruptions.example_images_note(4)
    assert "are CIFAR-10 test images" in note and "classes airplane, automobile, bird, cat, read from" in note
    assert "deer" not in note and "not CIFAR-10" not in corruptions.example_images_note(4)
    assert corruptions.example_images(4)[1].startswith("CIFAR-10 test images")
