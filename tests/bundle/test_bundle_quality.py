"""Warnings from a bundle's own validation record, end to end through translate."""

import logging

import numpy as np

from mantid_exp2sim.bundle.quality import validation_warning


def test_no_warning_without_validation_or_when_better_than_identity():
    assert validation_warning({"task": "convolve"}) is None
    assert validation_warning({"task": "convolve", "validation": {"psnr_convolve": 30.0, "psnr_identity": 27.0}}) is None


def test_warning_names_bundle_and_both_scores():
    msg = validation_warning(
        {"bundle_id": "convolve-3d-x", "task": "convolve", "validation": {"psnr_convolve": 19.7, "psnr_identity": 28.0}}
    )
    assert "convolve-3d-x" in msg and "19.70" in msg and "28.00" in msg


def test_translate_records_and_logs_the_warning(tiny_bundle, tmp_path, caplog):
    from mantid_exp2sim.bundle import load_bundle, write_bundle
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.inference import translate

    src = load_bundle(tiny_bundle("convolve", 2))
    manifest = dict(src.manifest)
    manifest["validation"] = {"psnr_convolve": 10.0, "psnr_identity": 20.0}
    manifest.pop("parts", None)
    path = tmp_path / "weak.exp2sim.h5"
    write_bundle(path, manifest, onnx=src.onnx_bytes(), weights=src.weights(), reference=src.reference() or None)
    histo = MDHisto.from_array(np.random.default_rng(0).random((12, 16)))
    with caplog.at_level(logging.WARNING, logger="mantid_exp2sim.inference"):
        out = translate(histo, path)
    assert "below doing nothing" in out.metadata["model_warning"]
    assert any("below doing nothing" in r.getMessage() for r in caplog.records)
    good = translate(histo, tiny_bundle("convolve", 2))
    assert "model_warning" not in good.metadata
