"""Slice files: atomic, self-checking records of finished stimulus ranges, read back by numpy."""

import os
import zipfile

import numpy as np
import pytest

from torchlens_like.extract.slices import SliceStore


def test_slices_round_trip_and_are_plain_npz_files(tmp_path):
    store = SliceStore(tmp_path)
    rng = np.random.default_rng(0)
    first = {"layer3": rng.random((4, 2, 3), dtype=np.float32), "block:2": rng.random((4, 5))}
    second = {"layer3": rng.random((2, 2, 3), dtype=np.float32), "block:2": rng.random((2, 5))}
    store.write(4, 6, second, skipped={5: "cannot read image 'x.png'"})
    store.write(0, 4, first)
    records = store.records()
    assert [(r.start, r.stop, r.keys) for r in records] == [(0, 4, ("layer3", "block:2")),
                                                            (4, 6, ("layer3", "block:2"))]
    values, skipped = store.read(records[1])
    assert skipped == {5: "cannot read image 'x.png'"}
    with np.load(records[0].path) as data:
        np.testing.assert_array_equal(data["layer0"], first["layer3"])
        assert data["layer0"].dtype == np.float32
    np.testing.assert_array_equal(values["block:2"], second["block:2"])
    assert store.covered("layer3") == [(0, 6)] and store.covered("fc") == []


def test_temporaries_of_a_killed_writer_are_ignored_and_damage_is_named(tmp_path):
    store = SliceStore(tmp_path)
    store.write(0, 2, {"fc": np.ones((2, 3))})
    open(os.path.join(store.directory, ".000000000002-000000000004.npz.tmp99"), "wb").close()
    assert [(r.start, r.stop) for r in store.records()] == [(0, 2)]
    path = store.records()[0].path
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("layer0.npy").header_offset
    raw = bytearray(open(path, "rb").read())
    raw[offset + 120] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match="000000000000-000000000002-[0-9a-f]{8}.npz.*damaged"):
        store.read(store.records()[0])
    store.clear()
    assert store.records() == [] and not os.path.exists(store.directory)


def test_rows_must_match_the_range(tmp_path):
    with pytest.raises(ValueError, match="layer 'fc' has 3 rows, not 2"):
        SliceStore(tmp_path).write(0, 2, {"fc": np.ones((3, 1))})


def test_layer_groups_over_the_same_range_keep_separate_files(tmp_path):
    store = SliceStore(tmp_path)
    store.write(0, 2, {"a": np.zeros((2, 1))})
    store.write(0, 2, {"b": np.ones((2, 1)), "c": np.ones((2, 2))})
    assert sorted(r.keys for r in store.records()) == [("a",), ("b", "c")]
    assert store.covered("a") == store.covered("c") == [(0, 2)]
