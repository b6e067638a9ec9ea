"""Small Keras / TensorFlow test models, each with an independent ground truth for its layers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras


def branching_functional():
    """Two branches from one stem, merged by Add and Concatenate, a shared Dense."""
    inputs = keras.Input((8, 8, 3), name="image")
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    stem = keras.layers.BatchNormalization(name="bn")(stem)
    stem = keras.layers.ReLU(name="relu")(stem)
    left = keras.layers.Conv2D(4, 1, name="left")(stem)
    right = keras.layers.DepthwiseConv2D(3, padding="same", name="right")(stem)
    merged = keras.layers.Add(name="add")([left, right])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(merged)
    both = keras.layers.Concatenate(name="concat")([pooled, keras.layers.Flatten(name="flat")(
        keras.layers.MaxPooling2D(4, name="maxpool")(stem))])
    outputs = keras.layers.Dense(5, activation="softmax", name="head")(both)
    return keras.Model(inputs, outputs, name="branching")


def nested_blocks():
    """A Sequential model whose layers include a nested Sequential block, used twice."""
    block = keras.Sequential([keras.layers.Dense(4, name="conv"),
                              keras.layers.Activation("relu", name="act")], name="block1")
    return keras.Sequential([keras.Input((4,)), block, keras.layers.Dense(4, name="mid"), block,
                             keras.layers.Dense(2, name="out")], name="nested")


class LoopAndCond(keras.Model):
    """A subclassed model: a Python loop over a shared Dense and an ``if`` on a tensor.

    Called eagerly, it appends what each step returned to ``self.seen`` (the
    ground truth for the logged passes).
    """

    def __init__(self):
        super().__init__(name="loop_and_cond")
        self.shared = keras.layers.Dense(6, activation="tanh", name="shared")
        self.head = keras.layers.Dense(2, name="head")
        self.seen = []

    def call(self, x):
        for _ in range(3):
            x = self.shared(x)
            if tf.executing_eagerly():
                self.seen.append(x.numpy())
        if tf.reduce_sum(x) > 0:
            x = x * 2.0
        else:
            x = x - 1.0
        return self.head(x)


class Raising(keras.Model):
    """Raises inside a nested layer while being called."""

    def __init__(self):
        super().__init__(name="raising")
        self.inner = Failing(name="inner")

    def call(self, x):
        return self.inner(keras.ops.relu(x))


class Failing(keras.layers.Layer):
    def call(self, x):
        raise ValueError("bad input for this layer")


class UsesNumpy(keras.Model):
    """Reads a tensor's value in Python: cannot be traced into a graph."""

    def __init__(self):
        super().__init__(name="uses_numpy")
        self.fc = keras.layers.Dense(2)

    def call(self, x):
        scale = float(x.numpy().mean())
        return self.fc(x) * scale


def lstm_model():
    inputs = keras.Input((5, 3))
    hidden = keras.layers.LSTM(4, name="lstm", unroll=False)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(hidden), name="recurrent")


def dropout_model(seed=7):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="fc1")(inputs)
    hidden = keras.layers.Dropout(0.5, seed=seed, name="drop")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(hidden), name="dropout")


def dict_input_model():
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    out = keras.layers.Dense(2, name="fc")(keras.layers.Multiply(name="mul")([a, b]))
    return keras.Model({"a": a, "b": b}, out, name="dict_inputs")


class Affine(tf.Module):
    """A plain ``tf.Module`` with its own variables."""

    def __init__(self):
        super().__init__(name="affine")
        self.w = tf.Variable(np.arange(6, dtype="float32").reshape(3, 2) / 10, name="w")
        self.b = tf.Variable(np.ones(2, "float32"), name="b")

    @tf.function
    def __call__(self, x):
        return tf.nn.relu(tf.matmul(x, self.w) + self.b)


def inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def layer_outputs(model, x):
    """``{layer name: NumPy array}`` from Keras' own sub-model over every layer (ground truth)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    values = probe(x)
    return {layer.name: np.asarray(v) for layer, v in zip(layers, values)}
