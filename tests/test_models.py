"""sharpness.training.models: shapes, layer counts (the L of the Fisher-Rao norm), heads and ImageNet weights."""

import pytest
import torch
from torch import nn

from sharpness.training.models import ARCHS, build_model, classifier_layer, count_weight_layers, imagenet_weights_path

# Linear/Conv/Embedding modules per arch: the paper's code counts ResNet-18 21, VGG-19 18, the paper's ViT 26.
# The three CPU families, counted by hand: resnet_small = stem + 2 convs x 3 blocks + 2 skip convs + classifier;
# vgg_small = 6 convs + fc + classifier; vit_small = patch projection + 4 Linear x 3 blocks + classifier.
LAYERS = {"resnet18": 21, "vgg19": 18, "vgg19_bn": 18, "vit": 26, "simple_cnn": 4, "cnn_mlp": 5,
          "resnet_small": 10, "vgg_small": 8, "vit_small": 14}


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


# Parameters of the CPU families (10 classes), added up by hand from their layers:
# resnet_small (24, 48, 96): stem 3*24*9 + BN 48 = 696; block 1: 2 x (24*24*9 + BN 48) = 10,464;
#   block 2: 24*48*9 + 96 + 48*48*9 + 96 + skip 24*48 + 96 = 32,544; block 3: 48*96*9 + 192 + 96*96*9 + 192
#   + skip 48*96 + 192 = 129,600; classifier 96*10 + 10 = 970.  Total 174,274.
# vgg_small (16,16,M,32,32,M,64,64,M; head 128): convs with bias + BN: 480 + 2,352 + 4,704 + 9,312 + 18,624
#   + 37,056 = 72,528; fc 64*4*4*128 + 128 + BN1d 256 = 131,456; classifier 1,290.  Total 205,274.
# vit_small (dim 64, depth 3, 2 heads of 32, MLP 128, patch 4): tokeniser LN(240) 480 + Linear(240, 64) 15,424;
#   class token 64 + positions 65*64 = 4,224; per block LN 128 + temperature 1 + qkv 64*192 + out 64*64 + 64
#   + LN 128 + 64*128 + 128 + 128*64 + 64 = 33,281 (x 3); final LN 128; classifier 650.  Total 120,749.
FAMILY_PARAMETERS = {"resnet_small": 174_274, "vgg_small": 205_274, "vit_small": 120_749}


@pytest.mark.parametrize("arch", FAMILY_PARAMETERS)
def test_cpu_families_have_their_hand_counted_sizes(arch):
    model = build_model(arch, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == FAMILY_PARAMETERS[arch]


def test_small_resnet_has_residual_stages_with_batch_norm():
    model = build_model("resnet_small", 10).eval()
    shapes = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    model(torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 24, 32, 32), (2, 48, 16, 16), (2, 96, 8, 8)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 2 * 3 + 2
    # the skip connection: with the residual branch's last BN scaled to zero, the first block is relu(input)
    first = model.blocks[0]
    with torch.no_grad():
        first.bn2.weight.zero_()
        first.bn2.bias.zero_()
    x = torch.randn(2, 24, 8, 8)
    assert torch.equal(first(x), torch.relu(x))


def test_small_vgg_is_a_plain_stack_without_skips():
    model = build_model("vgg_small", 10).eval()
    assert [type(m).__name__ for m in model.features][:4] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    with torch.no_grad():  # a plain stack: zeroing the first conv and its BN shift leaves no path for the input
        model.features[0].weight.zero_()
        model.features[0].bias.zero_()
        model.features[1].bias.zero_()
        a, b = model(torch.randn(2, 3, 32, 32)), model(torch.randn(2, 3, 32, 32))
    assert torch.allclose(a, b)


def test_small_vit_uses_4x4_patches():
    model = build_model("vit_small", 10)
    assert model.tokenise.patch_size == 4 and model.position.shape == (1, (32 // 4) ** 2 + 1, 64)
    assert len(model.blocks) == 3
