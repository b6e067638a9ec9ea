"""The ``keras`` model source and extract_features on a Keras model, against Keras' own values."""

import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

tf = pytest.importorskip("torchlens_like.tf_runtime.loader").tf
keras = pytest.importorskip("keras")

import torchlens_like as tll  # noqa: E402


def test_keras_source_lists_without_importing_tensorflow():
    code = ("import sys, torchlens_like as tll; table = tll.list_models(source='keras'); "
            "print('ResNet50' in set(table.model), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["True", "False"]


def test_load_model_random_init_with_its_own_preprocessing():
    model, transform = tll.load_model("MobileNetV2", source="keras")
    again, _ = tll.load_model("MobileNetV2", source="keras")
    assert isinstance(model, keras.Model) and model.input_shape == (None, 224, 224, 3)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
    image = PIL.Image.new("RGB", (50, 40), (255, 128, 0))
    expected = keras.applications.mobilenet_v2.preprocess_input(
        np.asarray(image.resize((224, 224)), dtype="float32"))
    np.testing.assert_array_equal(transform(image).numpy(), expected)
    from torchlens_like.extract.zoo import find_source

    assert find_source("EfficientNetB0") == "keras"


def test_extract_features_on_keras_model_equals_keras_submodel(image_root, tmp_path):
    model, transform = tll.load_model("MobileNetV2", source="keras")
    features = tll.extract_features(model, tll.ImageFolder(image_root, transform),
                                    layers=["Conv1", "block_1_project"], batch_size=4,
                                    output_dir=tmp_path / "features", format="npy",
                                    progress=False)
    stimuli = tll.ImageFolder(image_root, transform)
    images = np.stack([stimuli[i][0].numpy() for i in range(len(stimuli))])
    probe = keras.Model(model.inputs, [model.get_layer(name).output
                                       for name in ("Conv1", "block_1_project")])
    expected = [value.numpy() for value in probe(images)]
    loaded = tll.load_features(tmp_path / "features")
    for key, value in zip(("Conv1", "block_1_project"), expected):
        np.testing.assert_array_equal(np.asarray(features[key]), value)
        np.testing.assert_array_equal(np.load(tmp_path / "features" / f"{key}.npy"), value)
        np.testing.assert_array_equal(np.asarray(loaded[key]), value)
