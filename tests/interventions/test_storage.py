"""A set of data edits round-trips through JSON + safetensors; callables are refused."""

import json
import os

import pytest
import torch
from safetensors import safe_open

import torchlens_like as tll

from intervention_zoo import Blocks


def test_every_data_edit_round_trips_and_the_tensors_sit_in_safetensors(tmp_path):
    mask = torch.tensor([True, False] * 4)
    edits = {
        "fc1": tll.edits.zero(index=(slice(None), slice(2, None, 2))),
        "relu_1": tll.edits.steer(torch.linspace(-1, 1, 8), alpha=2.5, dim=-1, mask=mask),
        tll.select(func="tanh"): tll.edits.clamp(-0.5, None),
        "head": tll.edits.scale(0.25, index=(Ellipsis, torch.tensor([0, 2]))),
        3: tll.edits.patch({"linear_2_4": torch.ones(2, 8)}),
    }
    path = tll.edits.save(edits, tmp_path / "paper")
    assert path.endswith("paper.json")
    assert sorted(os.listdir(tmp_path)) == ["paper.json", "paper.safetensors"]
    assert tll.edits.load(path) == edits
    document = json.loads((tmp_path / "paper.json").read_text())
    assert [record["edit"] for record in document["edits"]] == \
        ["zero", "steer", "clamp", "scale", "patch"]
    with safe_open(str(tmp_path / "paper.safetensors"), "pt") as stored:
        keys = set(stored.keys())
        assert torch.equal(stored.get_tensor("1.0"), torch.linspace(-1, 1, 8))
    assert keys == {"1.0", "1.1", "3.0", "4.0"}


def test_reference_histories_are_stored_as_the_values_the_site_names(tmp_path):
    model = Blocks()
    x, other = torch.rand(2, 6), torch.rand(2, 6)
    reference = tll.log_forward_pass(model, other)
    edits = {"fc2": tll.edits.patch(reference), "relu_1": tll.edits.mean(reference, axis=0),
             "head": tll.edits.resample(reference, seed=9)}
    loaded = tll.edits.load(tll.edits.save(edits, tmp_path / "refs.json"))
    assert torch.equal(loaded["fc2"].source["linear_2_4"], reference["fc2"].tensor_contents)
    assert list(loaded["relu_1"].reference) == ["relu_1_3"] and loaded["relu_1"].axis == 0
    history = tll.log_forward_pass(model, x)
    direct, from_file = history.intervene(edits), history.intervene(loaded)
    assert torch.equal(direct["output_1"].tensor_contents, from_file["output_1"].tensor_contents)


def test_callables_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(TypeError, match="site 'fc1' .* callable: code cannot be saved"):
        tll.edits.save({"fc1": tll.edits.replace(lambda a, layer: a * 2)}, tmp_path / "e.json")
    with pytest.raises(TypeError, match="callable"):
        tll.edits.save({"fc1": lambda a, layer: a}, tmp_path / "e.json")
    assert os.listdir(tmp_path) == []


def test_loading_names_what_is_wrong(tmp_path):
    (tmp_path / "other.json").write_text('{"layers": []}')
    with pytest.raises(ValueError, match="not a set of edits"):
        tll.edits.load(tmp_path / "other.json")
    path = tll.edits.save({"fc1": tll.edits.zero()}, tmp_path / "e.json")
    os.remove(tmp_path / "e.safetensors")
    with pytest.raises(FileNotFoundError, match="e.safetensors, which is missing"):
        tll.edits.load(path)
