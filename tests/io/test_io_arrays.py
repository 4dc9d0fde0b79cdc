""".npy, .npz and .h5 histogram files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.io import load_histogram, open_md_signal, save_histogram


def _histo() -> MDHisto:
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(4, 6))
    signal[0, 5] = np.nan
    axes = (Axis("MosaicRow", "", 0.0, 4.0, 4), Axis("MosaicColumn", "", 0.0, 6.0, 6))
    return MDHisto(signal, axes, errors=np.abs(signal) * 0.1, metadata={"layout": "x", "ei_list": [25.0, 35.0]})


def test_npy_is_the_bare_signal_with_index_axes(tmp_path):
    histo = _histo()
    path = save_histogram(histo, tmp_path / "a.npy")
    raw = np.load(path)
    np.testing.assert_array_equal(raw, histo.signal)
    back = load_histogram(path)
    np.testing.assert_array_equal(back.signal, histo.signal)
    assert back.errors is None
    assert [(ax.name, ax.minimum, ax.maximum, ax.bins) for ax in back.axes] == [("Dim0", 0.0, 4.0, 4), ("Dim1", 0.0, 6.0, 6)]


@pytest.mark.parametrize("ext", [".npz", ".h5"])
def test_arrays_with_axes_round_trip(tmp_path, ext):
    histo = _histo()
    back = load_histogram(save_histogram(histo, tmp_path / f"a{ext}"))
    np.testing.assert_array_equal(back.signal, histo.signal)
    np.testing.assert_allclose(back.errors, np.where(np.isnan(histo.signal), np.nan, histo.errors), equal_nan=True)
    assert back.axes == histo.axes
    assert back.metadata == histo.metadata


def test_npz_with_only_one_array_is_read_with_index_axes(tmp_path):
    np.savez(tmp_path / "plain.npz", counts=np.arange(6.0).reshape(2, 3))
    back = load_histogram(tmp_path / "plain.npz")
    assert back.shape == (2, 3) and back.axes[1].name == "Dim1"
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(InputDataError, match="signal"):
        load_histogram(tmp_path / "two.npz")


def test_h5_of_another_kind_is_refused_clearly(tmp_path):
    bundle_like = tmp_path / "model.exp2sim.h5"
    with h5py.File(bundle_like, "w") as f:
        f.attrs["schema"] = "mantid-exp2sim-bundle"
    with pytest.raises(InputDataError, match="model bundle"):
        load_histogram(bundle_like)
    dataset_like = tmp_path / "train.h5"
    with h5py.File(dataset_like, "w") as f:
        f.attrs["format"] = "exp2sim-dataset"
    with pytest.raises(InputDataError, match="simulator data set"):
        load_histogram(dataset_like)


def test_h5_holding_a_savemd_file_is_read_as_one(tmp_path):
    histo = _histo()
    nxs = save_histogram(histo, tmp_path / "a.nxs")
    renamed = tmp_path / "a.h5"
    nxs.rename(renamed)
    np.testing.assert_array_equal(load_histogram(renamed).signal, histo.signal)


def test_bad_values_and_types_name_the_file(tmp_path):
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf], [0.0, 1.0]]))
    with pytest.raises(InputDataError, match=r"inf\.npy.*infinite"):
        load_histogram(tmp_path / "inf.npy")
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(InputDataError, match="dtype"):
        load_histogram(tmp_path / "text.npy")


def test_h5_streaming_reads_slabs_dimension_0_first(tmp_path):
    histo = _histo()
    path = save_histogram(histo, tmp_path / "a.h5")
    with open_md_signal(path) as reader:
        assert reader.layout == "exp2sim-h5"
        np.testing.assert_array_equal(reader.read_signal((slice(1, 3), slice(2, 6))), histo.signal[1:3, 2:6])


AXES2 = (Axis("a", "", 0.0, 1.0, 64), Axis("b", "", 0.0, 1.0, 64))


def _damaged_files(folder):
    """name -> (file, words the message must contain)."""
    rng = np.random.default_rng(0)
    np.save(folder / "ok.npy", rng.random((6, 7)))
    np.savez(folder / "ok.npz", signal=rng.random((6, 7)))
    npy, npz = (folder / "ok.npy").read_bytes(), (folder / "ok.npz").read_bytes()
    files = {
        "empty.npy": (b"", ["empty (0 bytes)"]),
        "empty.npz": (b"", ["empty (0 bytes)"]),
        "text.npz": (b"hello world\n", ["not a numpy .npz archive", "rename"]),
        "text.npy": (b"hello world\n", ["not a numpy .npy array", "rename"]),
        "cut.npy": (npy[: len(npy) // 2], ["truncated or damaged", "write it again"]),
        "cut.npz": (npz[: len(npz) // 2], ["truncated or damaged", "write it again"]),
        "header.npy": (npy[:20], ["truncated or damaged"]),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    np.savez(folder / "objects.npz", signal=np.array([{"a": 1}], dtype=object))
    files["objects.npz"] = (None, ["Python objects", "numeric arrays"])
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["objects.npy"] = (None, ["Python objects"])
    return {name: (folder / name, words) for name, (_, words) in files.items()}


def test_damaged_array_files_give_one_clear_line(tmp_path):
    for name, (path, words) in _damaged_files(tmp_path).items():
        before = path.read_bytes()
        with pytest.raises(InputDataError) as info:
            load_histogram(path)
        text = str(info.value)
        assert "\n" not in text and f"'{path}'" in text, name
        for word in words:
            assert word in text, (name, text)
        assert "allow_pickle" not in text and "pickle.load" not in text, name
        assert path.read_bytes() == before


def test_truncated_h5_data_is_reported_as_damaged(tmp_path):
    path = save_histogram(MDHisto(np.random.default_rng(1).random((64, 64)), AXES2), tmp_path / "x.h5")
    with h5py.File(path, "r") as f:
        offset = f["signal"].id.get_offset()
    data = path.read_bytes()
    if offset is None:  # chunked: cut the end of the file off
        path.write_bytes(data[: len(data) - 2000])
    else:
        path.write_bytes(data[:offset])
    with pytest.raises(InputDataError) as info:
        load_histogram(path)
    assert f"'{path}'" in str(info.value) and "\n" not in str(info.value)


def test_h5_declaring_more_bins_than_memory_suggests_stream(tmp_path, monkeypatch):
    import mantid_exp2sim.io as io

    from mantid_exp2sim.io.arrays import create_h5_layout

    path = tmp_path / "declared.h5"
    with h5py.File(path, "w") as f:  # tiny on disk: nothing is written, the fill value is NaN
        create_h5_layout(f, [Axis("a", "", 0, 1, 100_000), Axis("b", "", 0, 1, 100_000)], with_errors=False)
    assert path.stat().st_size < 100_000
    with pytest.raises(InputDataError) as info:
        load_histogram(path)
    text = str(info.value)
    assert "100000 x 100000 bins" in text and "74.5 GiB" in text and "--stream" in text
    # the check uses the memory actually available
    small = save_histogram(MDHisto.from_array(np.ones((30, 40))), tmp_path / "s.h5")
    monkeypatch.setattr(io, "available_memory", lambda: 1000)
    with pytest.raises(InputDataError, match="too large to read into memory"):
        load_histogram(small)
    monkeypatch.setattr(io, "available_memory", lambda: None)
    assert load_histogram(small).shape == (30, 40)
