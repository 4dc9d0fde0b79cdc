"""SaveMD (version 2) NeXus files: layout written, files as SaveMD writes them read back."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.io import load_histogram, open_md_signal, save_histogram


def _histo_3x4x5() -> MDHisto:
    # Distinct value per index so any transposition or reordering is caught.
    i, j, k = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    signal = 100.0 * i + 10.0 * j + k + 1.0
    signal[1, 2, 3] = np.nan
    errors = 0.5 * np.sqrt(signal)
    axes = (
        Axis("[H,0,0]", "r.l.u.", -1.0, 1.0, 3, frame="HKL"),
        Axis("[0,K,0]", "r.l.u.", -2.0, 2.0, 4, frame="HKL"),
        Axis("DeltaE", "meV", 0.0, 50.0, 5),
    )
    return MDHisto(signal, axes, errors=errors, metadata={"Ei": 70.0, "note": "test"})


def _text(value) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


def test_savemd_layout_is_what_loadmd_reads(tmp_path):
    histo = _histo_3x4x5()
    path = save_histogram(histo, tmp_path / "cube.nxs")
    with h5py.File(path, "r") as f:
        entry = f["MDHistoWorkspace"]
        assert _text(entry.attrs["NX_class"]) == "NXentry"
        assert entry.attrs["SaveMDVersion"] == 2 and entry.attrs["SaveMDVersion"].dtype == np.int32
        assert _text(entry.attrs["QConvention"]) == "Inelastic"
        # Fixed-length byte strings, not variable-length str.
        assert h5py.check_string_dtype(entry.attrs.get_id("NX_class").dtype).length is not None
        assert entry["coordinate_system"].dtype == np.uint32 and entry["coordinate_system"][0] == 3  # HKL
        assert entry["visual_normalization"].dtype == np.uint32
        data = entry["data"]
        assert _text(data.attrs["NX_class"]) == "NXdata"
        assert _text(data["signal"].attrs["axes"]) == "D2:D1:D0"
        assert data["signal"].attrs["signal"] == 1
        for name, dtype in (("signal", np.float64), ("errors_squared", np.float64), ("num_events", np.float64), ("mask", np.int8)):
            assert data[name].dtype == dtype
            assert data[name].shape == (5, 4, 3)  # (n2, n1, n0): last HDF5 axis is dimension 0
        assert data["signal"].chunks[0] == 1
        assert _text(data["D0"].attrs["long_name"]) == "[H,0,0]"
        assert _text(data["D0"].attrs["units"]) == "r.l.u."
        assert _text(data["D2"].attrs["frame"]) == "General Frame"
        np.testing.assert_allclose(data["D1"][()], np.linspace(-2, 2, 5))
        # Element [k, j, i] of the file is histo.signal[i, j, k].
        assert data["signal"][4, 3, 2] == histo.signal[2, 3, 4]
        assert data["signal"][0, 1, 2] == histo.signal[2, 1, 0]
        assert data["mask"][3, 2, 1] == 1 and data["mask"][()].sum() == 1
        assert np.isnan(data["errors_squared"][3, 2, 1])
        np.testing.assert_allclose(data["errors_squared"][0, 0, 0], histo.errors[0, 0, 0] ** 2)


def test_savemd_round_trip_keeps_order_axes_errors_mask_metadata(tmp_path):
    histo = _histo_3x4x5()
    back = load_histogram(save_histogram(histo, tmp_path / "cube.nxs"))
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back.signal, histo.signal)
    expected_err = np.where(np.isnan(histo.signal), np.nan, histo.errors)
    np.testing.assert_allclose(back.errors, expected_err, equal_nan=True)
    assert [ax.name for ax in back.axes] == ["[H,0,0]", "[0,K,0]", "DeltaE"]
    assert [ax.frame for ax in back.axes] == ["HKL", "HKL", "General Frame"]
    assert [(ax.minimum, ax.maximum, ax.bins, ax.unit) for ax in back.axes] == [
        (ax.minimum, ax.maximum, ax.bins, ax.unit) for ax in histo.axes
    ]
    assert back.metadata == {"Ei": 70.0, "note": "test"}


def _write_like_savemd(path, signal_c, edges, names, units, frames=None, *, mask=None, errors_squared=None):
    """A file built by hand exactly as Mantid's SaveMD writes it (file order given directly)."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("MDHistoWorkspace")
        entry.attrs["NX_class"] = np.bytes_(b"NXentry")
        entry.attrs["SaveMDVersion"] = np.int32(2)
        entry.attrs["QConvention"] = np.bytes_(b"Crystallography")
        entry.create_dataset("coordinate_system", data=np.array([0], np.uint32))
        entry.create_dataset("visual_normalization", data=np.array([0], np.uint32))
        data = entry.create_group("data")
        data.attrs["NX_class"] = np.bytes_(b"NXdata")
        n = len(edges)
        for i in range(n):
            d = data.create_dataset(f"D{i}", data=np.asarray(edges[i], np.float64))
            d.attrs["units"] = np.bytes_(units[i].encode())
            d.attrs["long_name"] = np.bytes_(names[i].encode())
            if frames is not None:
                d.attrs["frame"] = np.bytes_(frames[i].encode())
        s = data.create_dataset("signal", data=signal_c, chunks=(1,) + signal_c.shape[1:], compression="gzip")
        s.attrs["signal"] = np.int32(1)
        s.attrs["axes"] = np.bytes_(":".join(f"D{i}" for i in reversed(range(n))).encode())
        err2 = np.ones_like(signal_c) if errors_squared is None else errors_squared
        data.create_dataset("errors_squared", data=err2)
        data.create_dataset("num_events", data=np.ones_like(signal_c))
        m = np.zeros(signal_c.shape, np.int8) if mask is None else mask
        data.create_dataset("mask", data=m)


def test_reads_a_file_written_as_savemd_writes_it(tmp_path):
    # Mantid workspace with n0=2 (dim 0), n1=3 (dim 1): linear index i0 + 2*i1.
    # SaveMD stores the buffer C-ordered with shape (n1, n0).
    linear = np.arange(1.0, 7.0)  # signal of linear index 0..5
    file_array = linear.reshape(3, 2)  # [i1, i0]
    mask = np.zeros((3, 2), np.int8)
    mask[2, 1] = 1  # i0=1, i1=2
    # Boundaries in single precision, as Mantid's coord_t gives them.
    e0 = np.float32(0.1) + np.arange(3, dtype=np.float32) * np.float32(0.7)
    e1 = np.linspace(-3, 3, 4).astype(np.float32)
    path = tmp_path / "from_mantid.nxs"
    _write_like_savemd(path, file_array, [e0, e1], ["Q_x", "DeltaE"], ["Angstrom^-1", "meV"],
                       mask=mask, errors_squared=4.0 * np.ones((3, 2)))
    histo = load_histogram(path)
    assert histo.shape == (2, 3)
    # signal[i0, i1] = linear[i0 + 2*i1], i.e. the F-order reshape, as getSignalArray gives.
    expected = linear.reshape((2, 3), order="F").copy()
    expected[1, 2] = np.nan
    np.testing.assert_array_equal(histo.signal, expected)
    np.testing.assert_array_equal(histo.errors[~np.isnan(expected)], 2.0)
    assert np.isnan(histo.errors[1, 2])
    assert histo.axes[0].name == "Q_x" and histo.axes[0].id == "Q_x"
    assert histo.axes[0].bins == 2 and histo.axes[1].bins == 3
    assert histo.axes[0].minimum == pytest.approx(0.1, rel=1e-6)
    assert histo.axes[0].frame == "Unknown frame"  # LoadMD's value when 'frame' is missing
    assert histo.metadata["q_convention"] == "Crystallography"


def test_non_uniform_boundaries_are_refused(tmp_path):
    path = tmp_path / "nonuniform.nxs"
    _write_like_savemd(path, np.zeros((2, 3)), [[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 2.0]], ["A", "B"], ["", ""])
    with pytest.raises(InputDataError, match=r"Dimension 0 \('A'\).*not uniform"):
        load_histogram(path)


def test_md_event_workspace_file_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "events.nxs"
    with h5py.File(path, "w") as f:
        f.create_group("MDEventWorkspace").attrs["NX_class"] = np.bytes_(b"NXentry")
    with pytest.raises(InputDataError, match="MDEventWorkspace.*BinMD"):
        load_histogram(path)


def test_inconsistent_shape_is_refused(tmp_path):
    path = tmp_path / "bad.nxs"
    # 2x3 signal but the boundaries describe 3x2 (a transposed array would be scrambled).
    _write_like_savemd(path, np.zeros((2, 3)), [np.linspace(0, 1, 3), np.linspace(0, 1, 4)], ["A", "B"], ["", ""])
    with pytest.raises(InputDataError, match="shape"):
        load_histogram(path)


def test_not_hdf5_nxs_is_refused(tmp_path):
    path = tmp_path / "old.nxs"
    path.write_bytes(b"\x0e\x03\x13\x01 HDF4 file")
    with pytest.raises(InputDataError, match="not an HDF5 file"):
        load_histogram(path)


def test_streaming_reader_matches_whole_read_in_dimension_order(tmp_path):
    histo = _histo_3x4x5()
    path = save_histogram(histo, tmp_path / "cube.nxs")
    with open_md_signal(path) as reader:
        assert reader.shape == (3, 4, 5) and reader.layout == "savemd"
        assert reader.signal_dataset.shape == (5, 4, 3)
        slab = reader.read_signal((slice(1, 3), slice(None), slice(2, 5)))
        np.testing.assert_array_equal(slab, histo.signal[1:3, :, 2:5])
        np.testing.assert_array_equal(reader.read_signal((2,)), histo.signal[2])
        err = reader.read_errors((slice(1, 2),))
        assert np.isnan(err[0, 2, 3])
        np.testing.assert_allclose(err[0, 0, 0], histo.errors[1, 0, 0])
