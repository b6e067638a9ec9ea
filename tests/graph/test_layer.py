"""Reading an activation that was not saved says how to save it."""

import warnings

import pytest
import torch
import torchvision

import torchlens_like as tll


def test_unsaved_layer_warns_once_with_how_to_save_it(tmp_path):
    model, x = torchvision.models.alexnet(), torch.rand(1, 3, 64, 64)
    history = tll.log_forward_pass(model, x, layers_to_save=["features.6"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert history["features.6"].tensor_contents.shape == (1, 384, 3, 3)
        assert not history["features.8"].has_saved_activation
    for source in (history, tll.load_history(history.save(tmp_path / "run.tll"))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for _ in range(3):
                assert source["features.8"].tensor_contents is None
        assert len(caught) == 1
        assert caught[0].category is tll.ActivationNotSavedWarning
        assert "'conv2d_4_10' was not saved" in str(caught[0].message)
        assert "layers_to_save=['conv2d_4_10', ...]" in str(caught[0].message)
        assert caught[0].filename == __file__


def test_metadata_only_layers_warn_too():
    meta = tll.get_model_metadata(torch.nn.Linear(2, 2), torch.ones(1, 2))
    with pytest.warns(tll.ActivationNotSavedWarning, match="linear_1_2"):
        assert meta["linear_1"].tensor_contents is None
