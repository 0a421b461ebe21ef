"""Keras colorizers: the original method (gray → RGB autoencoder) and ours (L → ab chroma)."""

from __future__ import annotations

import keras
from keras import layers

from export.tiles import TILE


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


def chroma_unet(widths: tuple[int, ...] = (16, 32, 64)) -> keras.Model:
    """Ours: Lab L (0..1) in, a/b chroma (±1, tanh) out, a small U-Net.

    Skip connections carry edges from the encoder, so chroma boundaries follow object boundaries;
    luminance is never predicted: the runtime keeps the input's own L at full resolution.
    """
    inputs = keras.Input((TILE, TILE, 1), name="lightness")
    x, skips = inputs, []
    for width in widths:
        x = _conv(_conv(x, width), width)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = _conv(_conv(x, widths[-1] * 2), widths[-1] * 2)
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
        x = layers.Conv2DTranspose(width, 2, strides=2, padding="same")(x)
        x = _conv(_conv(layers.Concatenate()([x, skip]), width), width)
    outputs = layers.Conv2D(2, 1, activation="tanh", name="chroma")(x)
    return keras.Model(inputs, outputs, name="chroma_unet")


def build(kind: str) -> keras.Model:
    """A fresh, compiled model of the given kind (Adam, MSE, as in the original method)."""
    model = original_autoencoder() if kind == "rgb" else chroma_unet()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model
