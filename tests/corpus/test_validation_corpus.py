"""Capture and validation over a corpus of real models (``-m corpus``).

Every torchvision classification model (each module's output checked against
a forward hook, then the history validated), a few segmentation, video and
detection models with their real input structures, and timm models across
families, all with random weights at small input sizes. Each must pass
:func:`torchlens_like.validate_saved_activations`. Models that cannot run
here, or whose cost does not fit the CI budget, are listed in :data:`NOT_RUN`
with the reason, never dropped silently.

Torch runs single-threaded inside these tests (``conftest.py``).
"""

import pytest
import torch
import torchvision
from torchvision.models import detection, segmentation, video

import torchlens_like as tll
from groundtruth import assert_capture_matches_hooks, assert_lean_pass_matches
from torchlens_like.api import check_saved_activations

pytestmark = pytest.mark.corpus


def _validate(model, args):
    with torch.no_grad():
        assert tll.validate_saved_activations(model, args, verbose=True)


# ------------------------------------------------------------ torchvision classification

CLASSIFICATION_SIZE = {"inception_v3": 96, "maxvit_t": 224}
CLASSIFICATION_KWARGS = {
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "googlenet": {"aux_logits": False, "init_weights": False},
    **{name: {"image_size": 32} for name in ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32")},
    "vit_h_14": {"image_size": 28},
}
CLASSIFICATION = sorted(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_torchvision_classification(name):
    """Every module's output equals a forward hook's copy, and the history validates."""
    torch.manual_seed(0)
    kwargs = CLASSIFICATION_KWARGS.get(name, {})
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    size = kwargs.get("image_size", CLASSIFICATION_SIZE.get(name, 64))
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        history = assert_capture_matches_hooks(model, (x,))
        assert history.validate(verbose=True)
        assert_lean_pass_matches(model, (x,), {}, history)


# ------------------------------------------------------ segmentation, video, detection

def _two_images():
    return [[torch.rand(3, 96, 128), torch.rand(3, 80, 80)]]


def _one_image():
    return [[torch.rand(3, 96, 128)]]


OTHER_TASKS = {
    "fcn_resnet50": (lambda: segmentation.fcn_resnet50(weights_backbone=None, aux_loss=True),
                     lambda: torch.rand(1, 3, 64, 64)),
    "deeplabv3_mobilenet_v3_large": (
        lambda: segmentation.deeplabv3_mobilenet_v3_large(weights_backbone=None),
        lambda: torch.rand(1, 3, 64, 64)),
    "lraspp_mobilenet_v3_large": (
        lambda: segmentation.lraspp_mobilenet_v3_large(weights_backbone=None),
        lambda: torch.rand(1, 3, 64, 64)),
    "r3d_18": (video.r3d_18, lambda: torch.rand(1, 3, 4, 32, 32)),
    "r2plus1d_18": (video.r2plus1d_18, lambda: torch.rand(1, 3, 4, 32, 32)),
    "swin3d_t": (video.swin3d_t, lambda: torch.rand(1, 3, 4, 64, 64)),
    "s3d": (video.s3d, lambda: torch.rand(1, 3, 16, 224, 224)),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        lambda: detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None),
        _two_images),
    "ssdlite320_mobilenet_v3_large": (
        lambda: detection.ssdlite320_mobilenet_v3_large(weights_backbone=None), _one_image),
    "maskrcnn_resnet50_fpn": (
        lambda: detection.maskrcnn_resnet50_fpn(weights_backbone=None, min_size=96,
                                                max_size=128), _one_image),
}


@pytest.mark.parametrize("name", sorted(OTHER_TASKS))
def test_torchvision_other_tasks(name):
    build, inputs = OTHER_TASKS[name]
    torch.manual_seed(0)
    _validate(build().eval(), inputs())


# -------------------------------------------------------------------------------- timm

TIMM = {
    # convnets
    "resnet18": 64, "resnet26d": 64, "seresnet18": 64, "resnext26ts": 64, "skresnet18": 64,
    "resnest14d": 64, "res2net50_14w_8s": 64, "dla34": 64, "dpn68": 64, "cspresnet50": 64,
    "densenet121": 64, "hrnet_w18_small": 64, "selecsls42b": 64, "gernet_s": 64,
    "repvgg_a0": 64, "mobileone_s0": 64, "legacy_xception": 64, "eca_nfnet_l0": 64,
    "regnetx_002": 64, "regnety_002": 64, "regnetz_b16": 64,
    # efficient / mobile
    "efficientnet_b0": 64, "efficientnet_lite0": 64, "tf_efficientnetv2_b0": 64,
    "mobilenetv2_050": 64, "mobilenetv3_small_050": 64, "mixnet_s": 64, "ghostnet_100": 64,
    "rexnet_100": 64, "lcnet_050": 64, "tinynet_a": 64, "fastvit_t8": 64,
    # ConvNeXt and metaformers
    "convnext_atto": 64, "convnextv2_atto": 64, "edgenext_xx_small": 64, "poolformer_s12": 64,
    "convmixer_768_32": 64,
    # vision transformers
    "vit_tiny_patch16_224": 64, "deit_tiny_distilled_patch16_224": 64, "cait_xxs24_224": 64,
    "xcit_nano_12_p16_224": 64, "levit_128s": 64, "pit_ti_224": 64,
    "eva02_tiny_patch14_224": 64, "coat_lite_tiny": 64, "twins_svt_small": 64,
    "pvt_v2_b0": 64, "visformer_tiny": 64, "volo_d1_224": 64, "mobilevit_xxs": 64,
    # Swin and hybrids
    "swin_tiny_patch4_window7_224": 64, "swinv2_cr_tiny_ns_224": 64,
    "maxvit_tiny_rw_224": 64, "coatnet_nano_rw_224": 64, "botnet26t_256": 64,
    # MLPs and recurrent mixing
    "mixer_s16_224": 64, "resmlp_12_224": 64, "gmlp_ti16_224": 64, "sequencer2d_s": 64,
    # models with input-size constraints, at the smallest size they accept
    "efficientformer_l1": 224, "halonet26t": 256, "inception_v3": 96,
}

NOT_RUN = {
    "torchvision:mvit_v1_b, mvit_v2_s": "fixed 16x224x224 clips: about 45 s each here",
    "torchvision:retinanet_resnet50_fpn, fcos_resnet50_fpn, keypointrcnn_resnet50_fpn": (
        "same detection machinery as the detection models above at several times the cost "
        "(retinanet: about 40 s)"),
}


@pytest.mark.parametrize("name", sorted(TIMM))
def test_timm(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    size = TIMM[name]
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, img_size=size)
    except TypeError:
        model = timm.create_model(name, pretrained=False, num_classes=10)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        history = check_saved_activations(model.eval(), x)
        assert_lean_pass_matches(model, (x,), {}, history)


def test_timm_corpus_spans_families():
    families = {"resnet", "efficientnet", "convnext", "vit", "swin", "mixer", "regnet",
                "mobilenet", "deit", "maxvit", "densenet"}
    assert len(TIMM) >= 40
    assert all(any(name.startswith(family) for name in TIMM) for family in families)
