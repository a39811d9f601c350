"""sharpness.training.models: shapes, layer counts (the L of the Fisher-Rao norm), heads and ImageNet weights."""

import pytest
import torch
from torch import nn

from sharpness.training.models import ARCHS, build_model, classifier_layer, count_weight_layers, imagenet_weights_path

# Linear/Conv/Embedding modules per arch: DESIGN.md gives ResNet-18 21, VGG-19 18, the paper's ViT 26.
LAYERS = {"resnet18": 21, "vgg19": 18, "vgg19_bn": 18, "vit": 26, "simple_cnn": 4, "cnn_mlp": 5}


@pytest.mark.parametrize("arch", LAYERS)
def test_arch_shapes_layer_counts_and_final_linear(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7).eval()
    x = torch.randn(3, 3, 32, 32)
    assert model(x).shape == (3, 7)
    assert count_weight_layers(model) == LAYERS[arch]
    head = classifier_layer(model)
    assert head.out_features == 7
    with torch.no_grad():  # the head is the last op: zero weights leave exactly its bias
        head.weight.zero_()
        head.bias.copy_(torch.arange(7.0))
    assert torch.equal(model(x), torch.arange(7.0).expand(3, 7))


def test_cifar_resnet_keeps_32px_into_the_first_stage():
    model = build_model("resnet18", 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    model.eval()(torch.randn(1, 3, 32, 32))
    assert seen["shape"] == (1, 64, 32, 32)


def test_vgg_variants_differ_only_in_batch_norm():
    plain, with_bn = build_model("vgg19", 10), build_model("vgg19_bn", 10)
    count_bn = lambda m: sum(isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d)) for x in m.modules())  # noqa: E731
    assert count_bn(plain) == 0 and count_bn(with_bn) == 17


def test_same_seed_same_initial_weights():
    torch.manual_seed(5)
    a = build_model("simple_cnn", 10).state_dict()
    torch.manual_seed(5)
    b = build_model("simple_cnn", 10).state_dict()
    torch.manual_seed(6)
    c = build_model("simple_cnn", 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("bad", [dict(arch="resnet50"), dict(arch="simple_cnn", num_classes=1)])
def test_bad_arguments_are_named(bad):
    args = {"num_classes": 10, **bad}
    with pytest.raises(ValueError, match="resnet50|num_classes") as error:
        build_model(args.pop("arch"), **args)
    if bad["arch"] == "resnet50":
        assert all(a in str(error.value) for a in ARCHS)


def test_imagenet_arch_without_weights_explains_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1"):
        build_model("resnet18_imagenet", 200, pretrained_weights=tmp_path / "absent.pth")


def test_imagenet_arch_loads_local_weights_and_gets_a_new_head(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    reference = resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18_imagenet", 200, image_size=64, pretrained_weights=path)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert classifier_layer(model).out_features == 200 and model(torch.randn(2, 3, 64, 64)).shape == (2, 200)
    assert imagenet_weights_path("resnet18_imagenet").name == "resnet18-f37072fd.pth"
    skeleton = build_model("resnet18_imagenet", 200, pretrained=False)  # for loading trained checkpoints
    assert skeleton.fc.out_features == 200


def test_cnn_mlp_parameter_count_by_hand():
    # convs 3->16->32->64 (3x3, no bias) + BN (2 per channel), then Linear(64*4*4, 128) and Linear(128, 10)
    convs = 3 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9
    batch_norms = 2 * (16 + 32 + 64)
    head = (64 * 4 * 4 * 128 + 128) + (128 * 10 + 10)
    model = build_model("cnn_mlp", 10)
    assert sum(p.numel() for p in model.parameters()) == convs + batch_norms + head == 156_186
    assert classifier_layer(model).in_features == 128
