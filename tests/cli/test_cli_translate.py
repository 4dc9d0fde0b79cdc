"""``exp2sim deconvolve`` / ``exp2sim convolve`` and the ``exp2sim`` dispatcher."""

from __future__ import annotations

import numpy as np

import mantid_exp2sim.inference as inference
from mantid_exp2sim.bundle import load_bundle
from mantid_exp2sim.cli import translate as cli_translate
from mantid_exp2sim.cli.main import COMMANDS, get_parser, main
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.io import load_histogram, save_histogram


def _histo(shape=(20, 22), seed=0) -> MDHisto:
    rng = np.random.default_rng(seed)
    signal = rng.gamma(2.0, 1.0, size=shape)
    signal[(0,) * len(shape)] = np.nan
    names = ["[H,0,0]", "[0,K,0]", "DeltaE"][-len(shape):]
    axes = tuple(Axis(n, "r.l.u." if n.startswith("[") else "meV", 0.0, float(s), s) for n, s in zip(names, shape))
    return MDHisto(signal, axes, errors=np.sqrt(signal), metadata={"sample": "PCSMO"})


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_one_file_to_a_file(tmp_path, tiny_bundle, capsys):
    histo = _histo()
    src = save_histogram(histo, tmp_path / "measured.nxs")
    model = tiny_bundle("deconvolve", 2)
    status = main(["deconvolve", str(src), "--output", str(tmp_path / "result.nxs"), "--model", str(model), "--quiet"])
    assert status == 0
    out = load_histogram(tmp_path / "result.nxs")
    expected = inference.translate(histo, load_bundle(model), backend="onnx", device="cpu")
    np.testing.assert_allclose(out.signal, expected.signal, rtol=1e-5, atol=1e-6)
    assert out.axes == histo.axes
    assert np.isnan(out.signal[0, 0])
    assert out.metadata["bundle_id"] == load_bundle(model).bundle_id
    assert out.metadata["sample"] == "PCSMO" and out.metadata["source"] == str(src)
    assert capsys.readouterr().out == ""  # --quiet


def test_several_files_into_a_directory_with_progress(tmp_path, tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tiny_bundle("convolve", 2).parent))
    tiny_bundle("convolve", 3)
    inputs = [
        save_histogram(_histo(seed=1), tmp_path / "a.nxs"),
        save_histogram(_histo((6, 8, 9), seed=2), tmp_path / "b.h5"),
        save_histogram(_histo(seed=3), tmp_path / "c.npz"),
    ]
    np.save(tmp_path / "d.npy", _histo(seed=4).signal)
    inputs.append(tmp_path / "d.npy")
    status = main(["convolve", *map(str, inputs), "-o", str(tmp_path / "out"), "--patch-size", "24"])
    assert status == 0
    assert _files(tmp_path / "out") == ["a_convolved.nxs", "b_convolved.h5", "c_convolved.npz", "d_convolved.npy"]
    captured = capsys.readouterr()
    assert captured.out.split() == [str(tmp_path / "out" / n) for n in _files(tmp_path / "out")]
    assert "tile" in captured.err  # the tqdm progress bar
    assert load_histogram(tmp_path / "out" / "b_convolved.h5").shape == (6, 8, 9)


def test_a_failing_file_does_not_stop_the_others(tmp_path, tiny_bundle, capsys):
    good = save_histogram(_histo(), tmp_path / "good.nxs")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((10, 10), np.nan))
    missing = tmp_path / "missing.nxs"
    wrong_ndim = save_histogram(_histo((6, 8, 9)), tmp_path / "cube.nxs")
    args = [str(p) for p in (bad, missing, good, wrong_ndim)]
    status = main(["deconvolve", *args, "-o", str(tmp_path / "out"), "--model", str(tiny_bundle("deconvolve", 2)), "-q"])
    assert status == 1
    assert _files(tmp_path / "out") == ["good_deconvolved.nxs"]  # no partial or temporary files
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 4  # one line per failure plus the summary
    assert err_lines[0].startswith(f"exp2sim deconvolve: {bad}:") and "masked" in err_lines[0]
    assert err_lines[1].startswith(f"exp2sim deconvolve: {missing}:") and "does not exist" in err_lines[1]
    assert err_lines[2].startswith(f"exp2sim deconvolve: {wrong_ndim}:") and "3 dimensions" in err_lines[2]
    assert err_lines[3] == "exp2sim deconvolve: 3 of 4 input(s) failed"


def test_unwritable_output_and_existing_files(tmp_path, tiny_bundle, capsys):
    src = save_histogram(_histo(), tmp_path / "in.npz")
    model = str(tiny_bundle("deconvolve", 2))
    status = main(["deconvolve", str(src), "-o", str(tmp_path / "nowhere" / "deep" / "x.nxs"), "--model", model, "-q"])
    assert status == 1
    assert "nowhere" in capsys.readouterr().err
    target = tmp_path / "exists.npz"
    target.write_bytes(b"old")
    assert main(["deconvolve", str(src), "-o", str(target), "--model", model, "-q"]) == 1
    assert "--overwrite" in capsys.readouterr().err and target.read_bytes() == b"old"
    assert main(["deconvolve", str(src), "-o", str(target), "--model", model, "-q", "--overwrite"]) == 0
    assert load_histogram(target).shape == (20, 22)
    assert main(["deconvolve", str(src), "-o", str(src), "--model", model, "-q", "--overwrite"]) == 1
    assert "is the input file" in capsys.readouterr().err


def test_interrupted_or_failing_translation_leaves_no_partial_output(tmp_path, tiny_bundle, monkeypatch, capsys):
    src = save_histogram(_histo((40, 40)), tmp_path / "in.nxs")
    real_translate = inference.translate

    def dies_midway(*args, progress=None, **kwargs):
        def relay(done, total):
            if done >= 2:
                raise RuntimeError("device lost")
            progress(done, total)

        return real_translate(*args, progress=relay, **kwargs)

    monkeypatch.setattr(inference, "translate", dies_midway)
    base = ["deconvolve", str(src), "-o", str(tmp_path / "out.nxs"), "--model", str(tiny_bundle("deconvolve", 2)),
            "--patch-size", "24", "--batch-size", "1", "-q"]
    assert main(base) == 1
    assert "device lost" in capsys.readouterr().err
    assert _files(tmp_path) == ["in.nxs"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "translate", interrupted)
    assert main(base) == 130
    assert _files(tmp_path) == ["in.nxs"]


def test_stream_mode_writes_without_errors(tmp_path, tiny_bundle):
    histo = _histo()
    src = save_histogram(histo, tmp_path / "big.nxs")
    model = tiny_bundle("deconvolve", 2)
    assert main(["deconvolve", str(src), "-o", str(tmp_path / "s.nxs"), "--model", str(model), "--stream", "-q"]) == 0
    out = load_histogram(tmp_path / "s.nxs")
    expected = inference.translate(histo, load_bundle(model), backend="onnx", device="cpu")
    np.testing.assert_allclose(out.signal, expected.signal, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.errors[~np.isnan(out.signal)], 0.0)


def test_no_conserve_intensity_option_reaches_both_paths(tmp_path, tiny_bundle):
    histo = _histo()
    src = save_histogram(histo, tmp_path / "in.nxs")
    model = str(tiny_bundle("convolve", 2))
    for extra in ([], ["--stream"]):
        dst = tmp_path / f"out{len(extra)}.nxs"
        assert main(["convolve", str(src), "-o", str(dst), "--model", model, "--no-conserve-intensity", "-q"] + extra) == 0
        assert load_histogram(dst).metadata["intensity_conservation"] == "off"
    assert main(["convolve", str(src), "-o", str(tmp_path / "on.nxs"), "--model", model, "-q"]) == 0
    assert load_histogram(tmp_path / "on.nxs").metadata["intensity_conservation"] == "applied"


def test_usage_errors(tmp_path, capsys):
    assert main(["deconvolve", "a.nxs", "b.nxs", "-o", str(tmp_path / "one.nxs")]) == 2
    assert "give a directory" in capsys.readouterr().err
    assert main(["deconvolve", "a.nxs", "-o", str(tmp_path / "x.txt")]) == 2
    assert main(["deconvolve", "a.nxs"]) == 2  # --output is required
    assert main(["deconvolve", "a.nxs", "-o", "x.nxs", "--batch-size", "0"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert "mantid-exp2sim" in capsys.readouterr().out


def test_dispatcher_and_parsers():
    assert {"deconvolve", "convolve", "mantid-setup"} <= set(COMMANDS)
    help_text = get_parser().format_help()
    for name in COMMANDS:
        assert name in help_text
    parser = cli_translate.get_parser("convolve")
    args = parser.parse_args(["x.nxs", "-o", "out", "--patch-size", "32", "48", "--backend", "torch"])
    assert args.patch_size == [32, 48] and args.backend == "torch" and args.device == "auto"
    args = cli_translate.get_parser().parse_args(["deconvolve", "x.nxs", "-o", "out"])
    assert args.task == "deconvolve" and args.inputs == ["x.nxs"]


def test_plan_outputs_detects_collisions(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    jobs = cli_translate.plan_outputs([str(tmp_path / "x" / "s.nxs"), str(tmp_path / "y" / "s.nxs")],
                                      str(tmp_path / "out"), "deconvolve")
    assert jobs[0][1] == tmp_path / "out" / "s_deconvolved.nxs" and jobs[0][2] == ""
    assert jobs[1][1] is None and "would overwrite" in jobs[1][2]
    jobs = cli_translate.plan_outputs([str(tmp_path / "x" / "s.nxs")], str(tmp_path / "out"), "convolve", "h5")
    assert jobs[0][1].name == "s_convolved.h5"


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_directory_mode_refuses_an_output_that_is_another_input_before_any_work(
    tmp_path, tiny_bundle, monkeypatch, capsys
):
    a = save_histogram(_histo(seed=1), tmp_path / "a.nxs")
    save_histogram(_histo(seed=2), tmp_path / "a_deconvolved.nxs")
    before = _snapshot(tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("translation started")

    monkeypatch.setattr(inference, "translate", must_not_run)
    model = str(tiny_bundle("deconvolve", 2))
    rc = main(["deconvolve", str(a), str(tmp_path / "a_deconvolved.nxs"), "-o", str(tmp_path), "--overwrite",
               "--model", model, "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert f"the output of '{a}'" in line and "a_deconvolved.nxs' of this run" in line and "Traceback" not in err
    assert _snapshot(tmp_path) == before  # inputs byte for byte, nothing new

    # the same through a symbolic link in another folder, and into a folder still to be created
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "a_deconvolved.nxs").symlink_to(tmp_path / "a_deconvolved.nxs")
    rc = main(["deconvolve", str(a), str(other / "a_deconvolved.nxs"), "-o", str(tmp_path), "--overwrite",
               "--model", model, "-q"])
    assert rc == 1 and "of this run" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    rc = main(["deconvolve", str(a), "-o", str(tmp_path / "new" / "deeper/"), "--model", model, "-q"])
    assert rc == 1 and f"'{tmp_path / 'new'}' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_output_checks_run_before_work_and_name_the_fix(tmp_path, tiny_bundle, capsys):
    src = save_histogram(_histo(), tmp_path / "in.npz")
    model = str(tiny_bundle("deconvolve", 2))
    (tmp_path / "afile").write_bytes(b"x")
    rc = main(["deconvolve", str(src), "-o", str(tmp_path / "afile"), "--model", model, "-q"])
    assert rc == 1
    assert "as the --output folder: a file with that name exists" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in_deconvolved.npz").write_bytes(b"old")
    rc = main(["deconvolve", str(src), str(src), "-o", str(tmp_path / "out"), "--model", model, "-q"])
    assert rc == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "would overwrite the output of" in lines[0] and "--overwrite" in lines[1]
    assert (tmp_path / "out" / "in_deconvolved.npz").read_bytes() == b"old"
    rc = main(["deconvolve", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "x.npz"), "--stream", "--model", model])
    assert rc == 1 and "'.npz' is not one of .nxs, .h5, .hdf5" in capsys.readouterr().err


def test_damaged_files_are_reported_one_line_each_and_the_batch_goes_on(tmp_path, tiny_bundle, capsys):
    good = save_histogram(_histo(), tmp_path / "good.npz")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npz").write_text("not an archive\n")
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    names = ["empty.npy", "text.npz", "cut.npz", "good.npz"]
    before = _snapshot(tmp_path)
    rc = main(["deconvolve", *(str(tmp_path / n) for n in names), "-o", str(tmp_path / "out"),
               "--model", str(tiny_bundle("deconvolve", 2)), "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 4
    assert "empty (0 bytes)" in lines[0] and "not a numpy .npz archive" in lines[1] and "truncated" in lines[2]
    assert lines[3] == "exp2sim deconvolve: 3 of 4 input(s) failed"
    assert _files(tmp_path / "out") == ["good_deconvolved.npz"]
    assert _snapshot(tmp_path) == before


def test_unexpected_errors_and_memory_errors_stay_one_line(tmp_path, tiny_bundle, monkeypatch, capsys):
    import mantid_exp2sim.io as io

    files = [save_histogram(_histo(seed=s), tmp_path / f"{n}.npz") for s, n in enumerate(("odd", "big", "fine"))]
    real = io.load_histogram

    def load(path):
        if "odd" in str(path):
            raise KeyError("weird")
        if "big" in str(path):
            raise MemoryError("Unable to allocate 74.5 GiB")
        return real(path)

    monkeypatch.setattr(io, "load_histogram", load)
    rc = main(["convolve", *map(str, files), "-o", str(tmp_path / "out"), "--model", str(tiny_bundle("convolve", 2)),
               "-q"])
    assert rc == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and "unexpected KeyError" in lines[0] and "please report" in lines[0]
    assert "not enough memory" in lines[1] and "--stream" in lines[1]
    assert _files(tmp_path / "out") == ["fine_convolved.npz"]


def test_skipped_intensity_conservation_is_a_console_warning(tmp_path, tiny_bundle, capsys):
    histo = _histo()
    negative = MDHisto(-np.abs(histo.signal), histo.axes)
    src = save_histogram(negative, tmp_path / "neg.npy")
    model = str(tiny_bundle("deconvolve", 2))
    for extra, name in (([], "o.npy"), (["--stream"], "o.h5")):
        if extra:
            src = save_histogram(negative, tmp_path / "neg.h5")
        assert main(["deconvolve", str(src), "-o", str(tmp_path / name), "--model", model, "-q", *extra]) == 0
        err = capsys.readouterr().err
        assert f"warning: {src}: the integrated intensity was not conserved" in err and "not positive" in err
    positive = save_histogram(histo, tmp_path / "pos.npz")
    assert main(["deconvolve", str(positive), "-o", str(tmp_path / "p.npz"), "--model", model, "-q"]) == 0
    assert "not conserved" not in capsys.readouterr().err


def test_the_dispatcher_turns_any_escaping_error_into_one_line(monkeypatch, capsys):
    import mantid_exp2sim._console as console

    def broken(argv):
        raise KeyError("internal")

    monkeypatch.setattr(console, "_target", lambda spec: broken)
    assert main(["score", "x.npz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("exp2sim score: error: unexpected KeyError") and len(err.splitlines()) == 1
