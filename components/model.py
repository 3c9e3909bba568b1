"""CNN_Basic, layer for layer as in the TF2 expert MNIST lesson (Keras 3)."""

from __future__ import annotations

import keras

from components import features


def build_cnn_basic() -> keras.Model:
    """The seed's network: two conv blocks, a 512-unit dense layer, softmax over 10 digits."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=features.MODEL_INPUT_SHAPE, name=features.IMAGE_KEY),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.25),
            layers.Dense(features.NUM_CLASSES),
            layers.Softmax(),
        ],
        name="CNN_Basic",
    )
