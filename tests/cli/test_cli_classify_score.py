"""``exp2sim classify`` and ``exp2sim score`` run in-process on files, with tiny bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mantid_exp2sim import classify, score_histograms
from mantid_exp2sim.cli.main import COMMANDS, main
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.io import save_histogram
from mantid_exp2sim.mosaic import EI_LIST, MOSAIC_SHAPE, build_mosaic, mosaic_axes

pytestmark = pytest.mark.torch

DIMS2 = (Axis("[H,0,0]", "r.l.u.", -1.0, 1.0, 16, frame="HKL"), Axis("DeltaE", "meV", 0.0, 40.0, 16))


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from mantid_exp2sim.models.duq import DUQClassifier
    from mantid_exp2sim.train.export import export_classifier

    torch.manual_seed(2)
    model = DUQClassifier(widths=(4, 8, 8, 8), feature_dim=8, embedding_dim=8, length_scale=1.0)
    return export_classifier(model, tmp_path_factory.mktemp("cli_clf") / "classify_2d.exp2sim.h5",
                             classes=["dimer", "goodenough"], thresholds={"confident": 0.6, "out_of_distribution": 0.3},
                             exporter="torchscript", command=["pytest"])


def sample(rng):
    x = rng.gamma(2.0, 1.0, (16, 16))
    x[4:6] += 5.0
    return x


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from scored_bundles import write_scored_generator

    rng = np.random.default_rng(0)
    train = [MDHisto(sample(rng), DIMS2) for _ in range(50)]
    holdout = [MDHisto(sample(rng), DIMS2) for _ in range(10)]
    return write_scored_generator(tmp_path_factory.mktemp("cli_score"), train, holdout, seed=8, repeats=100)


def test_commands_are_registered():
    assert {"classify", "score"} <= set(COMMANDS)


def test_classify_mosaics_json(clf, tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths, sigs = [], []
    for i in range(2):
        s = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
        p = save_histogram(MDHisto(s, mosaic_axes()), tmp_path / f"m{i}.npz")
        paths.append(str(p))
        sigs.append(s)
    assert main(["classify", *paths, "--model", str(clf), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    for line, s, p in zip(lines, sigs, paths):
        assert set(line) >= {"input", "K", "prediction", "verdict"}
        assert line["input"] == p
        direct = classify(MDHisto(s, mosaic_axes()), str(clf))
        assert line["K"] == pytest.approx(direct.K, rel=1e-5)
        assert line["prediction"] == direct.prediction and line["verdict"] == direct.verdict
        assert line["domain"]["zone"] == direct.domain["zone"]
        assert line["classifier_verdict"] == direct.classifier_verdict
    assert main(["classify", paths[0], "--model", str(clf), "--json", "--no-domain-check"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["domain"] is None and line["verdict"] == line["classifier_verdict"]


def test_classify_volumes_with_ei_and_activation_map(clf, tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths, vols = [], []
    for ei in EI_LIST:
        v = MDHisto(rng.gamma(2.0, 1.0, (8, 8, 12)), (Axis("[H,0,0]", "r.l.u.", -1, 1, 8),
                                                      Axis("[0,K,0]", "r.l.u.", -1, 1, 8), Axis("DeltaE", "meV", 0, ei, 12)))
        paths.append(str(save_histogram(v, tmp_path / f"v{int(ei)}.npz")))
        vols.append(v)
    cam = tmp_path / "cam.npz"
    rc = main(["classify", *paths, "--ei", *map(str, EI_LIST), "--model", str(clf), "--activation-map", str(cam)])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and ("dimer" in out[0] or "goodenough" in out[0])
    direct = classify(build_mosaic(vols, list(EI_LIST)), str(clf))
    assert f"{direct.K['dimer']:.4f}" in out[0]
    from mantid_exp2sim.io import load_histogram

    assert load_histogram(cam).shape == MOSAIC_SHAPE


def test_classify_errors(clf, tmp_path, capsys):
    p = save_histogram(MDHisto(np.ones((10, 10)), (Axis("a", "", 0, 1, 10), Axis("b", "", 0, 1, 10))), tmp_path / "x.npz")
    assert main(["classify", str(p), "--model", str(clf)]) == 1
    assert "240x400" in capsys.readouterr().err
    v = MDHisto(np.ones((4, 4, 4)), (Axis("[H,0,0]", "r.l.u.", -1, 1, 4), Axis("[0,K,0]", "r.l.u.", -1, 1, 4),
                                     Axis("DeltaE", "meV", 0, 25, 4)))
    pv = save_histogram(v, tmp_path / "v.npz")
    assert main(["classify", str(pv), "--model", str(clf)]) == 1
    assert "incident energy" in capsys.readouterr().err
    assert main(["classify", str(p), str(pv), "--model", str(clf)]) == 2
    assert "not a mix" in capsys.readouterr().err


def test_score_json_and_plot(scorer, tmp_path, capsys):
    rng = np.random.default_rng(5)
    a = MDHisto(sample(rng), DIMS2)
    b = MDHisto(np.where(rng.random((16, 16)) < 0.1, 100.0, 0.0), DIMS2)
    pa, pb = save_histogram(a, tmp_path / "a.npz"), save_histogram(b, tmp_path / "b.npz")
    plot = tmp_path / "d.png"
    rc = main(["score", str(pa), str(pb), "--model", str(scorer), "--repeats", "100", "--json", "--plot", str(plot)])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["input"] for x in lines] == [str(pa), str(pb)]
    direct = score_histograms([a, b], str(scorer), repeats=100)
    for line, r in zip(lines, direct):
        assert set(line) >= {"mean", "std", "zone"}
        assert line["mean"] == pytest.approx(r.mean, rel=1e-9) and line["zone"] == r.zone
    assert plot.stat().st_size > 1000
    assert main(["score", str(pa), "--model", str(scorer), "--repeats", "10"]) == 0
    assert "->" in capsys.readouterr().out


def test_score_errors(scorer, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))
    v = MDHisto(np.ones((4, 4, 4)), (Axis("x", "", 0, 1, 4), Axis("y", "", 0, 1, 4), Axis("z", "", 0, 1, 4)))
    pv = save_histogram(v, tmp_path / "v.npz")
    assert main(["score", str(pv), "--model", str(scorer)]) == 1
    assert "2D model" in capsys.readouterr().err
    assert main(["score", str(pv)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["score", str(pv), "--repeats", "0"]) == 2


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _mosaic_file(path, seed=0):
    s = np.random.default_rng(seed).gamma(2.0, 1.0, MOSAIC_SHAPE)
    return save_histogram(MDHisto(s, mosaic_axes()), path)


def test_classify_never_writes_the_activation_map_over_an_input_or_an_existing_file(clf, tmp_path, capsys,
                                                                                     monkeypatch):
    import mantid_exp2sim.tasks.classify as classify_module

    m = _mosaic_file(tmp_path / "m.nxs")
    (tmp_path / "old.nxs").write_bytes(b"old")
    (tmp_path / "alias.nxs").symlink_to(m)
    before = _snapshot(tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("classification started")

    monkeypatch.setattr(classify_module, "classify", must_not_run)
    for target, extra, words in (
        (m, ["--overwrite"], "is the input"),
        (tmp_path / "alias.nxs", ["--overwrite"], "is the input"),
        (tmp_path / "old.nxs", [], "--overwrite"),
        (tmp_path / "no" / "cam.nxs", [], "does not exist"),
        (tmp_path / "cam.txt", [], "extension '.txt'"),
    ):
        rc = main(["classify", str(m), "--model", str(clf), "--no-domain-check", "--activation-map", str(target),
                   *extra])
        err = capsys.readouterr().err
        assert rc == 1 and words in err and len(err.splitlines()) == 1 and "Traceback" not in err, target
    assert _snapshot(tmp_path) == before
    monkeypatch.undo()
    rc = main(["classify", str(m), "--model", str(clf), "--no-domain-check", "--activation-map",
               str(tmp_path / "old.nxs"), "--overwrite"])
    assert rc == 0
    from mantid_exp2sim.io import load_histogram

    assert load_histogram(tmp_path / "old.nxs").shape == MOSAIC_SHAPE


def test_classify_reports_every_unreadable_file_and_classifies_the_rest(clf, tmp_path, capsys):
    good = [_mosaic_file(tmp_path / f"m{i}.npz", seed=i) for i in range(2)]
    (tmp_path / "empty.npy").write_bytes(b"")
    data = good[0].read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 3])
    masked = save_histogram(MDHisto(np.full(MOSAIC_SHAPE, np.nan), mosaic_axes()), tmp_path / "masked.npz")
    args = [str(good[0]), str(tmp_path / "missing.npz"), str(tmp_path / "empty.npy"), str(tmp_path / "cut.npz"),
            str(masked), str(good[1])]
    before = _snapshot(tmp_path)
    rc = main(["classify", *args, "--model", str(clf), "--no-domain-check"])
    assert rc == 1
    captured = capsys.readouterr()
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [str(good[0]), str(good[1])]
    err = captured.err.splitlines()
    assert "Traceback" not in captured.err and len(err) == 4
    assert "does not exist" in err[0] and "empty (0 bytes)" in err[1] and "truncated" in err[2]
    assert err[3].startswith(f"exp2sim classify: {masked}:")
    assert _snapshot(tmp_path) == before


def test_classify_volumes_with_an_unreadable_one_are_not_classified(clf, tmp_path, capsys):
    paths = []
    for ei in EI_LIST:
        v = MDHisto(np.ones((4, 4, 6)), (Axis("[H,0,0]", "r.l.u.", -1, 1, 4), Axis("[0,K,0]", "r.l.u.", -1, 1, 4),
                                          Axis("DeltaE", "meV", 0, ei, 6)))
        paths.append(str(save_histogram(v, tmp_path / f"v{int(ei)}.npz")))
    (tmp_path / "v25.npz").write_bytes(b"")
    rc = main(["classify", *paths, "--ei", *map(str, EI_LIST), "--model", str(clf)])
    assert rc == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert captured.out == "" and len(err) == 2
    assert "v25.npz" in err[0] and "not classified: 1 of the 6 volume file(s)" in err[1]


def test_score_checks_the_plot_before_any_work_and_keeps_going_past_bad_files(scorer, tmp_path, capsys,
                                                                             monkeypatch):
    import mantid_exp2sim.tasks.score as applicability

    rng = np.random.default_rng(5)
    pa = save_histogram(MDHisto(sample(rng), DIMS2), tmp_path / "a.npz")
    (tmp_path / "old.png").write_bytes(b"old")
    (tmp_path / "empty.npy").write_bytes(b"")
    before = _snapshot(tmp_path)
    real = applicability.score_histograms

    def must_not_run(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(applicability, "score_histograms", must_not_run)
    for target, extra, words in (
        (tmp_path / "old.png", [], "the file exists"),
        (pa, ["--overwrite"], "is the input"),
        (tmp_path / "d.txt", [], "'.txt' is not one of .png"),
        (tmp_path / "missing" / "d.png", [], f"'{tmp_path / 'missing'}' does not exist"),
        (tmp_path, [], "a directory with that name exists"),
    ):
        rc = main(["score", str(pa), "--model", str(scorer), "--repeats", "10", "--plot", str(target), *extra])
        err = capsys.readouterr().err
        assert rc == 1 and words in err and len(err.splitlines()) == 1, target
    assert _snapshot(tmp_path) == before

    monkeypatch.setattr(applicability, "score_histograms", real)
    rc = main(["score", str(tmp_path / "empty.npy"), str(pa), "--model", str(scorer), "--repeats", "10",
               "--plot", str(tmp_path / "old.png"), "--overwrite"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "empty (0 bytes)" in captured.err and len(captured.err.splitlines()) == 1
    assert captured.out.startswith(f"{pa}: mean")
    assert (tmp_path / "old.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "empty.npy", "old.png"]  # no temporary files
