"""One byte formatter for the whole package, in decimal units with their SI names."""

import pytest
import torch

import torchlens_like as tll
from torchlens_like.units import format_bytes, parse_bytes


@pytest.mark.parametrize("n", [0, 999, 1000, 1536, 12_000, 3 * 1024 ** 2, 40_020_000,
                               7 * 10 ** 9 + 1, 2 * 10 ** 12])
def test_sizes_are_decimal_and_read_back(n):
    text = format_bytes(n)
    number, unit = text.split()
    factor = {"B": 1, "kB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12}[unit]
    assert 1 <= n / factor < 1000 or n < 1000
    assert float(number) == pytest.approx(n / factor, abs=0.005)
    assert parse_bytes(text) == pytest.approx(n, rel=0.005, abs=5)


def test_the_layer_table_and_the_extraction_plan_write_sizes_alike(capsys):
    model = torch.nn.Sequential(torch.nn.Linear(300, 500)).eval()
    history = tll.get_model_metadata(model, torch.rand(2, 300))
    assert f"{format_bytes(history['linear_1'].tensor_fsize)}" in history.summary()
    assert format_bytes(history["linear_1"].tensor_fsize) == "4.00 kB"  # 2 x 500 float32
    data = torch.utils.data.TensorDataset(torch.rand(10, 300))
    tll.extract_features(model, data, ["0"], dry_run=True, progress=False)
    assert "Total for the whole set: 20.00 kB" in capsys.readouterr().out  # 10 x 500 x 4
