"""Issue 12's acceptance: every command, and every algorithm through the Mantid test double, on
the bad-input corpus (``benchmarks/bad_input_corpus.py``, shared with
``benchmarks/bench_bad_inputs.py``).

One test per corpus case. Each builds its files in a fresh folder, runs the command line (in
this process through the command's ``main(argv)``, or for the cases in :data:`SUBPROCESS` and
those that could run away, through the installed console script), then its algorithm
equivalent when it has one, and fails with every property the run broke: the exit status, a
traceback, a message that is not one line naming the problem, an input changed, a new or
partial file left, good files of a batch left unprocessed, a missing warning. Nothing is
marked xfail: a failing case is a defect of the command, listed in the report.

The tiny bundles and checkpoints of the corpus are built once per test run (shared by the
xdist workers through a lock file).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import bad_input_corpus as corpus  # noqa: E402

pytestmark = pytest.mark.torch

#: Cases also run through the installed console scripts (a real process: exit status, stderr,
#: tracebacks as a user sees them), besides the ``subprocess_only`` ones.
SUBPROCESS = {
    "empty_npy_deconvolve",
    "bundle_external_data_deconvolve",
    "activation_map_is_the_input_classify",
    "simulate_output_in_an_unwritable_folder",
    "export_checkpoint_missing",
    "output_symlink_to_the_input_deconvolve",
    "batch_classify_missing_file",
}


def test_the_corpus_is_large_and_covers_the_issue():
    names = [s.name for s in corpus.SPECS]
    assert len(names) == len(set(names)) >= 60
    categories = {s.category for s in corpus.SPECS}
    assert {"empty", "truncated", "wrong-type", "wrong-shape", "all-nan", "infinite", "huge", "negative", "batch",
            "damaged-bundle", "collision", "missing", "unwritable"} <= categories
    assert {s.issue for s in corpus.SPECS} >= {"2", "3", "4", "5"}
    commands = {(s.name.split("_")[-1]) for s in corpus.SPECS}
    assert {"deconvolve", "convolve", "classify", "score"} <= commands
    assert any(n.startswith("demo_") for n in names) and any(n.startswith("simulate_") for n in names)
    assert any(n.startswith("export_") for n in names)
    assert SUBPROCESS <= set(names)


def _wait_for(marker: Path, failed: Path, timeout: float = 900.0) -> None:
    t0 = time.monotonic()
    while not marker.exists():
        if failed.exists():
            pytest.fail(f"building the corpus resources failed in another worker: {failed.read_text()}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"the corpus resources were not ready after {timeout:g} s")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def resources(tmp_path_factory):
    """The corpus bundles and checkpoints, built by the first worker, reused by the others."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "bad_input_resources"
    ready, failed = root.with_name(root.name + ".ready"), root.with_name(root.name + ".failed")
    try:
        fd = os.open(root.with_name(root.name + ".lock"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        _wait_for(ready, failed)
        return corpus.Resources.open(root)
    os.close(fd)
    try:
        built = corpus.Resources.build(root)
    except BaseException as exc:
        failed.write_text(f"{type(exc).__name__}: {exc}")
        raise
    ready.write_text(f"{built.seconds:.1f} s")
    return built


def _report(case: corpus.Case, res: corpus.CliResult, problems: dict[str, str]) -> str:
    lines = [f"case {case.name} ({case.category}, issue item {case.issue or '-'}): {case.note}".rstrip(": "),
             f"  command (in {case.cwd}): {case.command_line}", f"  exit status {res.returncode}"]
    lines += [f"  broken {k}: {v}" for k, v in problems.items()]
    tail = res.stderr.strip().splitlines()[-6:]
    lines += ["  stderr (last lines):"] + [f"    {ln[:300]}" for ln in tail]
    return "\n".join(lines)


@pytest.mark.parametrize("spec", corpus.SPECS, ids=[s.name for s in corpus.SPECS])
def test_bad_input(spec, resources, tmp_path):
    try:
        case = spec.build(resources, tmp_path / "case")
    except corpus.CaseUnavailable as exc:
        pytest.skip(str(exc))
    try:
        before = corpus.snapshot(case.watch)
        if case.subprocess_only or spec.name in SUBPROCESS:
            res = corpus.run_subprocess(case)
        else:
            res = corpus.run_in_process(case)
        problems = corpus.check_cli(case, before, corpus.snapshot(case.watch), res)
        if case.algorithm is not None:
            before = corpus.snapshot(case.watch)
            alg = corpus.run_algorithm(case.algorithm, case)
            for key, why in corpus.check_algorithm(case, before, corpus.snapshot(case.watch), alg).items():
                problems[f"algorithm {case.algorithm.algorithm}: {key}"] = why
    finally:
        case.release()
    assert not problems, _report(case, res, problems)


def test_the_checks_catch_what_they_claim(tmp_path):
    """The harness itself: a command that overwrites its input, leaves a temporary file, ends
    in a traceback and stops a batch early breaks exactly those properties."""
    d = tmp_path / "c"
    d.mkdir()
    (d / "in.txt").write_text("data")
    case = corpus.Case(name="self-check", category="batch", issue="", argv=["exp2sim", "x"], cwd=d,
                       expected_outputs=[d / "good.out"], mentions=["in.txt"], watch=[d])
    before = corpus.snapshot(case.watch)
    (d / "in.txt").write_text("replaced")
    (d / ".in.txt.tmp").write_text("partial")
    res = corpus.CliResult(0, "", "Traceback (most recent call last):\n  ...\nEOFError: x\n", traceback=True)
    broken = corpus.check_cli(case, before, corpus.snapshot(case.watch), res)
    assert set(broken) == {"exit_status", "traceback", "inputs_modified", "partial_outputs_left",
                           "batches_stopped_early"}
    ok = corpus.CliResult(1, "", "exp2sim x: in.txt: cannot read it\nexp2sim x: 1 of 1 input(s) failed\n", False)
    assert corpus.check_cli(case, corpus.snapshot(case.watch), corpus.snapshot(case.watch), ok) == {
        "batches_stopped_early": "good input not processed: good.out"}
    two_lines = corpus.CliResult(1, "", "exp2sim x: cannot read\nbecause of this\n", False)
    assert "message" in corpus.check_cli(case, before, before, two_lines)
    usage = corpus.CliResult(2, "", "usage: exp2sim x [-h]\n       more usage\nexp2sim x: error: in.txt bad\n", False)
    assert "message" not in corpus.check_cli(case, before, before, usage)
