"""Saving and loading histories, checked against the original history and the raw file."""

import json
import os
import pickle
import subprocess
import sys

import networkx as nx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import torchlens_like as tll
from torchlens_like.render.dot import to_dot
from torchlens_like.render.options import RenderOptions
from torchlens_like.render.view import build_view
from zoo import CASES

PUBLIC_FIELDS = (
    "layer_label", "layer_label_short", "layer_label_no_pass", "layer_type", "layer_type_num",
    "layer_total_num", "pass_num", "num_passes", "kind", "func_name", "func_args", "func_time",
    "tensor_shape", "tensor_dtype", "tensor_device", "tensor_fsize", "has_saved_activation",
    "parent_layers", "child_layers", "parent_arg_positions", "distance_from_input",
    "distance_from_output", "has_params", "param_names", "param_shapes", "params_fsize",
    "containing_modules", "module_nesting_depth", "module_outputs",
    "is_input", "is_output", "is_buffer", "is_internally_generated", "in_cond_branch",
    "is_cond_bool", "cond_branch_start", "is_recurrent",
)


def _header(path):
    """The safetensors header, read with nothing but the file format's definition."""
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        return json.loads(handle.read(length))


def _assert_same_history(loaded, original):
    assert loaded.layer_labels == original.layer_labels
    for name in ("model_name", "module_types", "module_outputs", "num_params",
                 "total_params_bytes", "elapsed_time", "total_activation_bytes",
                 "saved_layers", "input_layers", "output_layers"):
        assert getattr(loaded, name) == getattr(original, name), name
    for new, old in zip(loaded, original):
        for name in PUBLIC_FIELDS:
            assert repr(getattr(new, name)) == repr(getattr(old, name)), (old.layer_label, name)
        if old.has_saved_activation:
            saved, read = old.tensor_contents, new.tensor_contents
            assert read.dtype == saved.dtype and read.shape == saved.shape, old.layer_label
            assert read.stride() == saved.stride() or not _dense(saved), old.layer_label
            assert torch.equal(_bits(read), _bits(saved)), old.layer_label


def _bits(tensor):
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _dense(tensor):
    return tensor.is_contiguous() or tensor.is_contiguous(memory_format=torch.channels_last) or (
        tensor.dim() == 2 and tensor.t().is_contiguous())


def _dot(history, vis_opt):
    options = RenderOptions(vis_opt=vis_opt)
    return to_dot(history, build_view(history, options), options)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_equals_the_original(name, tmp_path):
    case = CASES[name]()
    original = tll.log_forward_pass(case.model, case.args, case.kwargs, random_seed=case.seed)
    loaded = tll.load_history(original.save(tmp_path / "run.tll"))
    assert loaded.lint() == []
    _assert_same_history(loaded, original)
    assert loaded.summary() == original.summary()
    assert loaded.to_pandas().to_json() == original.to_pandas().to_json()
    assert nx.utils.graphs_equal(loaded.to_networkx(), original.to_networkx())
    for vis_opt in ("unrolled", "rolled"):
        assert _dot(loaded, vis_opt) == _dot(original, vis_opt)


def test_file_is_plain_safetensors_with_a_json_document(tmp_path):
    case = CASES["channels_last"]()
    history = tll.log_forward_pass(case.model, case.args)
    path = history.save(tmp_path / "run.tll")
    header = _header(path)
    document = json.loads(header["__metadata__"]["history"])
    assert document["format"] == "torchlens_like.history"
    assert document["schema_version"] == tll.io.SCHEMA_VERSION
    assert [layer["layer_label"] for layer in document["layers"]] == history.layer_labels
    assert sorted(key for key in header if key != "__metadata__") == sorted(history.saved_layers)
    with safe_open(path, framework="pt") as handle:
        for label in history.saved_layers:
            stored = handle.get_tensor(label)
            info = document["layers"][history.layer_labels.index(label)]["activation"]
            expected = history[label].tensor_contents.permute(info["permutation"])
            assert torch.equal(stored, expected), label


def test_dtypes_and_memory_formats_are_kept(tmp_path):
    def forward(x):
        return (x.half(), x.bfloat16(), x.double().to(torch.complex128), x > 0, x.long(),
                x.to(memory_format=torch.channels_last), x.transpose(1, 3), x[:, :, ::2],
                x.to(torch.float8_e4m3fn), x.sum(), x.expand(2, -1, -1, -1))

    history = tll.log_forward_pass(forward, torch.randn(1, 3, 4, 5))
    loaded = tll.load_history(history.save(tmp_path / "run.tll"))
    dtypes = {loaded[label].tensor_contents.dtype for label in loaded.output_layers}
    assert {torch.float16, torch.bfloat16, torch.complex128, torch.bool, torch.int64,
            torch.float8_e4m3fn} <= dtypes
    _assert_same_history(loaded, history)
    channels_last = loaded[loaded.output_layers[5]].tensor_contents
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert not channels_last.is_contiguous()


def test_activations_are_read_on_first_access(tmp_path):
    history = tll.log_forward_pass(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()),
                                   torch.ones(1, 4))
    path = history.save(tmp_path / "run.tll")
    loaded = tll.load_history(path)
    header = _header(path)
    begin, end = header["linear_1_2"]["data_offsets"]
    offset = 8 + int.from_bytes(open(path, "rb").read(8), "little") + begin
    with open(path, "r+b") as handle:      # rewrite the stored bytes after loading the metadata
        handle.seek(offset)
        handle.write(torch.full((1, 4), 7.0).numpy().tobytes())
    assert torch.equal(loaded["linear_1"].tensor_contents, torch.full((1, 4), 7.0))
    assert torch.equal(loaded["relu_1"].tensor_contents, history["relu_1"].tensor_contents)


def test_pickle_round_trip_in_a_fresh_interpreter(tmp_path):
    case = CASES["recurrents"]()
    history = tll.log_forward_pass(case.model, case.args)
    _assert_same_history(pickle.loads(pickle.dumps(history)), history)
    (tmp_path / "h.pkl").write_bytes(pickle.dumps(history))
    code = ("import pickle, sys; h = pickle.load(open(sys.argv[1], 'rb')); "
            "print(len(h), float(h[-1].tensor_contents.sum()))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.pkl")],
                          capture_output=True, text=True, env=os.environ, check=True)
    assert done.stdout.split() == [str(len(history)),
                                   str(float(history[-1].tensor_contents.sum()))]
    loaded = tll.load_history(history.save(tmp_path / "run.tll"))
    _assert_same_history(pickle.loads(pickle.dumps(loaded)), history)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.tll"
    document = {"format": "torchlens_like.history", "schema_version": 99, "layers": []}
    save_file({}, path, metadata={"history": json.dumps(document)})
    with pytest.raises(tll.HistoryFormatError, match="newer.*schema 99.*pip install -U"):
        tll.load_history(path)


@pytest.mark.parametrize("content", [b"not a safetensors file", None])
def test_other_files_are_refused(tmp_path, content):
    path = tmp_path / "other.safetensors"
    if content is None:
        save_file({"w": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(tll.HistoryFormatError, match="not a saved torchlens_like history"):
        tll.load_history(path)
    with pytest.raises(FileNotFoundError, match="missing.tll"):
        tll.load_history(tmp_path / "missing.tll")


def test_failed_save_leaves_the_earlier_file(tmp_path):
    history = tll.log_forward_pass(torch.nn.ReLU(), torch.ones(3))
    path = history.save(tmp_path / "run.tll")
    before = path_bytes = open(path, "rb").read()
    history["relu_1"].tensor_contents = torch.ones(3).to_sparse()
    with pytest.raises(TypeError, match="dense"):
        history.save(path)
    assert open(path, "rb").read() == before == path_bytes
    assert os.listdir(tmp_path) == ["run.tll"]


CORPUS = {"resnet18": 64, "mobilenet_v3_small": 64, "efficientnet_b0": 64, "vit_b_16": 224,
          "convnext_tiny": 64}


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_round_trip_on_torchvision_models(name, tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    size = CORPUS[name]
    with torch.no_grad():
        original = tll.log_forward_pass(model, torch.rand(2, 3, size, size))
    loaded = tll.load_history(original.save(tmp_path / "run.tll"))
    _assert_same_history(loaded, original)
    assert _dot(loaded, "rolled") == _dot(original, "rolled")


def test_a_loaded_history_says_why_it_cannot_be_validated(tmp_path):
    model, x = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), torch.rand(2, 3)
    history = tll.log_forward_pass(model, x)
    assert history.validate()
    loaded = tll.load_history(history.save(tmp_path / "run.tll"))
    with pytest.raises(ValueError, match="loaded from a file.*validate_saved_activations"):
        loaded.validate()
