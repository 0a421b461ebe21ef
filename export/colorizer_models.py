"""Keras colorizers: the original method (gray → RGB autoencoder) and ours (L → ab chroma).

Also the losses ours can train with. `mse` is the original recipe's, on the a/b channels.
`psnr` scores what evaluation scores: the model's chroma is recombined with the input's own L
into RGB (Lab → sRGB as OpenCV computes it, clipped to 0..1 as the runtime clips), and the loss
is each sample's RGB MSE in dB (−PSNR), averaged over the batch. On a log scale a wrong color on
a nearly gray picture costs as much as it costs in the reported mean PSNR, which is what teaches
the model to leave color out where it is unsure.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from edge.models.colorizer import AB_SCALE, L_SCALE
from export.tiles import TILE

LOSSES = ("mse", "psnr")
UPSAMPLING = ("bilinear", "transpose")
# OpenCV's Lab white point (D65) and its XYZ → linear sRGB matrix (cv2.COLOR_Lab2BGR).
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
_XYZ_TO_RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
# −PSNR of a sample is 10·log10(MSE + this): scores stop at 40 dB. Whole color photos score far
# below that; without a floor, the nearly gray crops (which score 40-60 dB however they are
# colored) would dominate every batch's gradient.
PSNR_FLOOR = 1e-4
IMAGENET_WIDTH = 64  # scene channels the ImageNet features become in `chroma_unet`


def _conv(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    return layers.Conv2D(filters, 3, padding="same", activation="relu")(x)


def original_autoencoder(widths: tuple[int, ...] = (32, 64, 128)) -> keras.Model:
    """The original method: a plain convolutional autoencoder, 128×128 gray in, 128×128 RGB out.

    Encoder of conv + max-pool stages, decoder of upsample + conv stages, sigmoid RGB output. All
    colour *and* luminance pass through the 16×16 bottleneck, which is why its output is blurred.
    The default widths give it about as many parameters as `chroma_unet` (0.48 M each), so the
    comparison is between methods, not model sizes.
    """
    inputs = keras.Input((TILE, TILE, 1), name="gray")
    x = inputs
    for width in widths:
        x = layers.MaxPooling2D()(_conv(x, width))
    x = _conv(x, widths[-1])
    for width in reversed(widths):
        x = _conv(layers.UpSampling2D()(x), width)
    outputs = layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="rgb")(x)
    return keras.Model(inputs, outputs, name="original_rgb_autoencoder")


def chroma_unet(
    widths: tuple[int, ...] = (16, 32, 64),
    upsampling: str = "bilinear",
    context: bool = True,
    internal: int = 2,
    imagenet: int | None = None,
) -> keras.Model:
    """Ours: Lab L (0..1) in, a/b chroma (±1, tanh) out, a small U-Net.

    Skip connections carry edges from the encoder, so chroma boundaries follow object boundaries;
    luminance is never predicted: the runtime keeps the input's own L at full resolution. The
    output layer starts at zero weights: an untrained model returns the gray input.

    Args:
        widths: channels per encoder level (the bottleneck has twice the last).
        upsampling: how the decoder doubles the resolution before each skip: `bilinear`
            (smooth), or `transpose`, the first version's Conv2DTranspose(2, strides=2): its
            2×2 kernels never overlap, so a change between two bottleneck cells reaches the
            output as a step, never smoothed (the sides of the first model's false-color blocks).
        context: add the whole picture's average bottleneck features to every bottleneck cell
            (global pooling, a dense layer, broadcast back), so that each region's color can
            depend on the scene, not only on what its receptive field sees.
        internal: the U-Net works at 128/`internal` pixels (the input average-pooled, the
            chroma upsampled bilinearly back to 128×128): chroma is smooth, and at 64×64 a
            training step costs about half as much, which buys epochs.
        imagenet: the length of a second input, the picture's ImageNet features
            (`export.imagenet.imagenet_encoder`): a dense layer turns them into IMAGENET_WIDTH
            scene channels added to every bottleneck cell, so that the colors can follow what
            the scene shows (sky, foliage, skin). `imagenet_colorizer` joins the two models.
    """
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
    inputs = keras.Input((TILE, TILE, 1), name="lightness")
    features = keras.Input((imagenet,), name="imagenet") if imagenet else None
    x, skips = inputs, []
    if internal > 1:
        x = layers.AveragePooling2D(internal)(x)
    for width in widths:
        x = _conv(_conv(x, width), width)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    bottom = widths[-1] * 2
    x = _conv(_conv(x, bottom), bottom)
    scenes = []
    if context:
        scenes.append(layers.Dense(bottom, activation="relu")(layers.GlobalAveragePooling2D()(x)))
    if features is not None:
        scenes.append(layers.Dense(IMAGENET_WIDTH, activation="relu")(features))
    if scenes:
        cells = TILE // internal // 2 ** len(widths)
        everywhere = [
            layers.UpSampling2D(cells)(layers.Reshape((1, 1, scene.shape[-1]))(scene))
            for scene in scenes
        ]
        x = layers.Conv2D(bottom, 1, activation="relu")(layers.Concatenate()([x, *everywhere]))
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
        if upsampling == "transpose":
            x = layers.Conv2DTranspose(width, 2, strides=2, padding="same")(x)
        else:
            x = layers.UpSampling2D(interpolation="bilinear")(x)
        x = _conv(_conv(layers.Concatenate()([x, skip]), width), width)
    # Zero weights: a fresh model outputs no chroma, i.e. the gray input, and learns from there.
    last = "chroma" if internal == 1 else None
    x = layers.Conv2D(2, 1, activation="tanh", kernel_initializer="zeros", name=last)(x)
    if internal > 1:
        x = layers.UpSampling2D(internal, interpolation="bilinear", name="chroma")(x)
    return keras.Model(inputs if features is None else [inputs, features], x, name="chroma_unet")


def imagenet_colorizer(unet: keras.Model, encoder: keras.Model) -> keras.Model:
    """One model, L in and chroma out, as the runtime runs it: `encoder` feeding `unet`.

    `unet` takes L and the ImageNet features (`chroma_unet(imagenet=...)`), `encoder` computes
    them from L (`export.imagenet.imagenet_encoder`, frozen). The U-Net goes in as an uncompiled
    copy: a nested model saved with its training loss would not load without that loss.
    """
    copy = keras.Model.from_config(unet.get_config())
    copy.set_weights(unet.get_weights())
    inputs = keras.Input((TILE, TILE, 1), name="lightness")
    return keras.Model(inputs, copy([inputs, encoder(inputs)]), name="chroma_unet_imagenet")


def lab_to_rgb(lightness: keras.KerasTensor, ab: keras.KerasTensor) -> keras.KerasTensor:
    """sRGB (0..1, clipped) of L (0..100) and a/b, as OpenCV's float Lab → BGR (RGB order here)."""
    fy = (lightness + 16.0) / 116.0
    fx = fy + ab[..., 0:1] / 500.0
    fz = fy - ab[..., 1:2] / 200.0

    def inverse(f: keras.KerasTensor) -> keras.KerasTensor:
        return ops.where(f > 6.0 / 29.0, f**3, 3.0 * (6.0 / 29.0) ** 2 * (f - 4.0 / 29.0))

    y = ops.where(lightness > 8.0, fy**3, lightness / 903.3)
    x, z = _WHITE_X * inverse(fx), _WHITE_Z * inverse(fz)
    linear = ops.concatenate([m[0] * x + m[1] * y + m[2] * z for m in _XYZ_TO_RGB], axis=-1)
    linear = ops.clip(linear, 0.0, 1.0)
    # sRGB gamma; the power's argument is kept off 0, where its gradient is infinite.
    curved = 1.055 * ops.power(ops.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055
    return ops.where(linear <= 0.0031308, 12.92 * linear, curved)


def psnr_loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """Per-sample −PSNR (dB) of the RGB image the runtime would output.

    Args:
        y_true: (N, H, W, 4): the model input (L/100) and the true RGB (0..1).
        y_pred: (N, H, W, 2): the model's chroma (ab/128).
    """
    rgb = lab_to_rgb(y_true[..., 0:1] * L_SCALE, y_pred * AB_SCALE)
    mse = ops.mean(ops.square(rgb - y_true[..., 1:4]), axis=(1, 2, 3))
    return 10.0 * ops.log(mse + PSNR_FLOOR) / ops.log(10.0)


def build(
    kind: str, loss: str = "mse", steps: int | None = None, imagenet: int | None = None
) -> keras.Model:
    """A fresh, compiled model of the given kind: Adam (1e-3) and the given loss (`LOSSES`).

    The `rgb` kind is the original method: MSE, constant learning rate. For `chroma`, `mse`
    expects targets ab/128 (N, H, W, 2) and `psnr` expects L/100 and RGB (N, H, W, 4); given the
    number of training `steps`, its learning rate decays to zero on a cosine over them. Given
    `imagenet`, the chroma model also takes ImageNet features of that length (`chroma_unet`).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if kind == "rgb":
        model = original_autoencoder()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        return model
    model = chroma_unet(imagenet=imagenet)
    rate = 1e-3 if steps is None else keras.optimizers.schedules.CosineDecay(1e-3, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(rate), loss=psnr_loss if loss == "psnr" else "mse"
    )
    return model
