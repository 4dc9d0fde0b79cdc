"""bundle/resolve.py: the one way from a path, a Bundle or None to a checked bundle."""

from __future__ import annotations

import pytest

from mantid_exp2sim.bundle import load_bundle
from mantid_exp2sim.bundle.resolve import classifier_bundle, generator_bundle, resolve_bundle, score_bundle
from mantid_exp2sim.errors import BundleError


def test_a_path_a_bundle_and_none_give_the_same_checked_bundle(tiny_bundle, monkeypatch):
    path = tiny_bundle("deconvolve", 2)
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tiny_bundle.dir))
    from_path = generator_bundle("deconvolve", 2, path)
    from_str = generator_bundle("deconvolve", 2, str(path))
    loaded = load_bundle(path)
    assert generator_bundle("deconvolve", 2, loaded) is loaded
    for default in (None, ""):
        assert generator_bundle("deconvolve", 2, default).path == path
    assert from_path.sha256 == from_str.sha256 == loaded.sha256 and from_path.path == path


def test_wrong_task_kind_or_dimensionality_is_refused_for_files_and_loaded_bundles(tiny_bundle):
    path = tiny_bundle("convolve", 3)
    for source in (path, load_bundle(path)):
        with pytest.raises(BundleError, match="Wrong task"):
            generator_bundle("deconvolve", 3, source)
        with pytest.raises(BundleError, match="3D model, made for 3D data; the input has 2 dimensions"):
            generator_bundle("convolve", 2, source)
        with pytest.raises(BundleError, match="Wrong kind"):
            classifier_bundle(source)


def test_missing_defaults_and_missing_parts(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))
    with pytest.raises(BundleError, match="default deconvolve bundle for 2D data is missing"):
        generator_bundle("deconvolve", 2)
    with pytest.raises(BundleError, match="No model for 4D data"):
        generator_bundle("deconvolve", 4)
    with pytest.raises(BundleError, match="No model bundle given"):
        resolve_bundle(None)
    with pytest.raises(BundleError, match="reference bank"):
        score_bundle(2, tiny_bundle("deconvolve", 2))  # a generator without a reference bank
    assert resolve_bundle(tiny_bundle("deconvolve", 2)).kind == "generator"  # no requirements: any bundle
