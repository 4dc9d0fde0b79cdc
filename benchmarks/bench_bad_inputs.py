"""Bad-input benchmark (issue 12): the whole corpus through the installed commands.

Run from the repository root, with the package installed (``pip install -e ".[all]"``; the
corpus builds tiny bundles and checkpoints with torch and onnx)::

    python benchmarks/bench_bad_inputs.py [--only SUBSTRING ...] [--work-dir DIR] [--keep]
                                          [--no-algorithms] [--jobs N]

Every case of ``benchmarks/bad_input_corpus.py`` (empty, truncated, wrong-type, wrong-shape,
all-NaN, infinite, huge and negative inputs, batches with bad files, damaged bundles, paths
that collide, are missing or are not writable, interrupted runs) is built in a fresh folder
and its command line run as a user would, with ``exp2sim``, ``exp2sim-simulate`` or
``exp2sim-train`` from PATH (a subprocess each; ``PYTHONPATH`` starts with this checkout, so
the commands run the code under test). The case's Mantid algorithm equivalent, when it has
one, runs in this process through real Mantid or, without it, ``tests/mantid_double``. Each
case is checked for the properties listed in ``bad_input_corpus`` (exit status, traceback,
one-line message, inputs unchanged, no new or partial file, good files of a batch processed,
warnings).

One line per case is printed, then, as the last line, one JSON object:

* ``cases``: cases run (at least 60); ``tracebacks``, ``inputs_modified``,
  ``partial_outputs_left``, ``batches_stopped_early``: how many cases broke each property (a
  case counts once per property, command or algorithm); all must be 0;
* ``wrong_exit_status``, ``unclear_messages``, ``warnings_missing``, ``timeouts``: the other
  properties, counted the same way;
* ``algorithm_calls``, ``algorithm_failures``: algorithm equivalents run and failed;
* ``failures``: the names of the cases that broke any property, ``failure_details``: what each
  broke and how; ``unavailable``: cases that cannot be set up here, with the reason (e.g. no
  unwritable folder for root without ``chattr +i``);
* ``by_category``, ``by_issue_item``, ``by_command``: case counts; ``seconds``,
  ``resources_seconds``, ``slowest``: timings; ``mantid``: ``"real"`` or ``"test double"``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def _use_mantid() -> str:
    """Real Mantid when importable, else the test double (before mantid_exp2sim is imported)."""
    try:
        import mantid

        if not getattr(mantid, "IS_TEST_DOUBLE", False):
            return "real"
    except ImportError:
        pass
    sys.path.insert(0, str(REPO / "tests" / "mantid_double"))
    return "test double"


def _command(argv: list[str]) -> str:
    if argv[0] == "exp2sim-simulate":
        return "exp2sim-simulate"
    return f"{argv[0]} {argv[1]}"


def run_case(spec: Any, resources: Any, folder: Path, algorithms: bool) -> tuple[dict[str, Any], Any]:
    """Build, run and check one case; returns its outcome and the built case (None if unavailable)."""
    import bad_input_corpus as corpus

    try:
        case = spec.build(resources, folder)
    except corpus.CaseUnavailable as exc:
        return {"name": spec.name, "unavailable": str(exc)}, None
    try:
        before = corpus.snapshot(case.watch)
        res = corpus.run_subprocess(case)
        broken = corpus.check_cli(case, before, corpus.snapshot(case.watch), res)
        outcome: dict[str, Any] = {"name": spec.name, "broken": broken, "algorithm": None, "seconds": res.seconds,
                                   "returncode": res.returncode, "command": _command(case.argv)}
        if algorithms and case.algorithm is not None:
            outcome["algorithm"] = {}  # filled in the main thread (Mantid's services are not thread-safe)
    finally:
        case.release()
    return outcome, case


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="SUBSTRING", help="run only the cases whose name contains one of these")
    p.add_argument("--work-dir", type=Path, help="folder for the corpus (default: a temporary folder, deleted)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--no-algorithms", action="store_true", help="skip the Mantid algorithm equivalents")
    p.add_argument("--jobs", type=int, default=1, help="commands run at a time (default 1)")
    args = p.parse_args(argv)

    mantid_kind = _use_mantid()
    import bad_input_corpus as corpus

    for command in corpus.ENTRY_POINTS:
        if shutil.which(command) is None:
            p.error(f"the command {command!r} is not on PATH: install the package (pip install -e '.[all]')")

    t0 = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="exp2sim_bad_inputs_"))
    work.mkdir(parents=True, exist_ok=True)
    specs = [s for s in corpus.SPECS if not args.only or any(o in s.name for o in args.only)]
    try:
        print(f"building the corpus resources in {work} ...", flush=True)
        resources = corpus.Resources.build(work / "resources")
        print(f"  {resources.seconds:.1f} s", flush=True)

        def one(spec: Any) -> tuple[dict[str, Any], Any]:
            return run_case(spec, resources, work / "cases" / spec.name, not args.no_algorithms)

        outcomes, unavailable = [], {}
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for spec, (outcome, case) in zip(specs, pool.map(one, specs)):
                if "unavailable" in outcome:
                    unavailable[spec.name] = outcome["unavailable"]
                    print(f"{spec.name}: unavailable ({outcome['unavailable']})", flush=True)
                    continue
                if outcome["algorithm"] is not None:
                    before = corpus.snapshot(case.watch)
                    res = corpus.run_algorithm(case.algorithm, case)
                    outcome["algorithm"] = corpus.check_algorithm(case, before, corpus.snapshot(case.watch), res)
                outcomes.append(outcome)
                broken = sorted(outcome["broken"]) + [f"algorithm:{k}" for k in sorted(outcome["algorithm"] or {})]
                print(f"{spec.name}: rc {outcome['returncode']}, {outcome['seconds']:.1f} s, "
                      f"{'ok' if not broken else 'BROKEN ' + ', '.join(broken)}", flush=True)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    result = corpus.summarise(outcomes, unavailable)
    by_name = {s.name: s for s in specs}
    result["by_category"] = dict(Counter(by_name[o["name"]].category for o in outcomes))
    result["by_issue_item"] = dict(Counter(by_name[o["name"]].issue or "generic" for o in outcomes))
    result["by_command"] = dict(Counter(o["command"] for o in outcomes))
    result["slowest"] = {o["name"]: round(o["seconds"], 2)
                         for o in sorted(outcomes, key=lambda o: -o["seconds"])[:5]}
    result["resources_seconds"] = round(resources.seconds, 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["mantid"] = mantid_kind
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
