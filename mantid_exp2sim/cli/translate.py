"""``exp2sim deconvolve`` / ``exp2sim convolve``: translate histogram files with a GAN bundle.

Before any work, every output path is checked against every input and the model (resolved
paths, symlinks included), for its extension, its directory (which must exist; only the
``--output`` folder itself is created) and an existing file (replaced only with
``--overwrite``); if any check fails nothing is done. Then each input (SaveMD ``.nxs``,
``.npy``, ``.npz`` or ``.h5``) is translated on its own; a failure is reported in one line and
the other files still run. Outputs are written atomically, so a failed or interrupted file
leaves nothing behind. Exit status: 0 when every file succeeded, 1 when any failed or an
output path was refused, 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..io import STREAMABLE_EXTENSIONS, SUPPORTED_EXTENSIONS
from ..io.output_paths import PlannedOutput, output_path_problems, same_file
from .._console import failure_line

__all__ = ["get_parser", "main", "main_convolve", "main_deconvolve", "plan_outputs"]

TASKS = {
    "deconvolve": "remove the instrument resolution from measured spectra (Exp2Sim)",
    "convolve": "add the instrument resolution to simulated spectra (Sim2Exp)",
}
_SUFFIX = {"deconvolve": "_deconvolved", "convolve": "_convolved"}
_FORMATS = {"same": None, "nxs": ".nxs", "h5": ".h5", "npz": ".npz", "npy": ".npy"}


def get_parser(task: str | None = None) -> argparse.ArgumentParser:
    """Parser of one task (``"deconvolve"`` or ``"convolve"``); None: the task is the first argument."""
    prog = f"exp2sim {task}" if task else "exp2sim-translate"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(TASKS[task].capitalize() if task else "Translate spectra") + " with an Exp2SimGAN model bundle.",
        epilog=(
            "Inputs: SaveMD .nxs files of MDHistoWorkspaces, .npy arrays (index axes), or .npz/.h5 "
            "histograms written by mantid-exp2sim. Output errors are the input errors scaled by the "
            "ratio of output to input RMS intensity (see docs/algorithms)."
        ),
    )
    if task is None:
        parser.add_argument("task", choices=sorted(TASKS), help="what to do")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="input files")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH_OR_DIR",
        help="output file (one input), or a directory (created if missing; its parent must exist) receiving "
        f"<name>{_SUFFIX.get(task or 'deconvolve')}<ext> per input",
    )
    parser.add_argument("--model", metavar="BUNDLE", help="model bundle (*.exp2sim.h5); default: the shipped one")
    parser.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto", help="inference engine")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto", help="where to run")
    parser.add_argument("--batch-size", type=_positive_int, metavar="N", help="tiles per network call")
    parser.add_argument(
        "--patch-size",
        type=_positive_int,
        nargs="+",
        metavar="N",
        help="tile size in bins: one value, or one per dimension (dimension 0 first)",
    )
    parser.add_argument(
        "--format",
        choices=sorted(_FORMATS),
        default="same",
        help="output format in directory mode (default: the input's)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream .nxs/.h5 files tile by tile from and to disk (bounded memory for large "
        "volumes; the output then has no errors)",
    )
    parser.add_argument(
        "--no-conserve-intensity",
        dest="conserve_intensity",
        action="store_false",
        help="keep the network's integrated intensity (default: rescale the output to the input's "
        "integral over unmasked bins)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no list of outputs")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _directory_mode(output: str) -> bool:
    """Whether ``--output`` names a folder: an existing one, a trailing slash, or no extension."""
    out = Path(output).expanduser()
    return out.is_dir() or output.endswith(("/", os.sep)) or not out.suffix


def plan_outputs(inputs: Sequence[str], output: str, task: str, fmt: str = "same") -> list[tuple[Path, Path | None, str]]:
    """Pair every input with its output path.

    Returns
    -------
    list of (input, output or None, problem)
        ``problem`` is "" or why this input cannot be processed (output is then None).
    """
    out = Path(output).expanduser()
    ext = out.suffix.lower()
    directory_mode = _directory_mode(output)
    if not directory_mode and ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"--output '{output}' has the unsupported extension '{ext}'; use one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}, or a directory"
        )
    if not directory_mode and len(inputs) > 1:
        raise ValueError(
            f"--output '{output}' is a file name but there are {len(inputs)} inputs; give a directory"
        )
    jobs: list[tuple[Path, Path | None, str]] = []
    seen: dict[Path, Path] = {}
    for text in inputs:
        src = Path(text).expanduser()
        if directory_mode:
            new_ext = _FORMATS[fmt] or src.suffix.lower()
            dst = (out / f"{src.name[: len(src.name) - len(src.suffix)]}{_SUFFIX[task]}{new_ext}").absolute()
        else:
            dst = out.absolute()
        problem = ""
        if dst in seen:
            problem = f"its output '{dst}' would overwrite the output of '{seen[dst]}'"
        elif same_file(src, dst):
            problem = f"the output '{dst}' is the input file; inputs are never overwritten"
        jobs.append((src, None if problem else dst, problem))
        seen.setdefault(dst, src)
    return jobs


class _Bar:
    """A tqdm progress bar on stderr, created at the first progress call."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.bar = label, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=int(total), desc=self.label, unit="tile", file=sys.stderr, leave=False)
        self.bar.update(int(done) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _translate_one(src: Path, dst: Path, task: str, args: argparse.Namespace, models: dict, bar: _Bar) -> None:
    from ..histogram import network_ndim
    from ..io import check_output_path, load_histogram, open_md_signal, save_histogram
    from ..tasks.translate import translate_histo

    if dst.exists() and not args.overwrite:
        raise FileExistsError(f"the output '{dst}' exists (use --overwrite to replace it)")
    check_output_path(dst)
    options = dict(
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        conserve_intensity=args.conserve_intensity,
    )
    if args.stream:
        from ..inference import translate_file

        if src.suffix.lower() not in STREAMABLE_EXTENSIONS or dst.suffix.lower() not in STREAMABLE_EXTENSIONS:
            raise ValueError(f"--stream needs {'/'.join(STREAMABLE_EXTENSIONS)} input and output files")
        with open_md_signal(src) as reader:
            ndim = network_ndim(reader.shape)
        translate_file(src, dst, _model(models, task, ndim, args.model), progress=bar, **options)
        with open_md_signal(dst) as written:
            _warn_conservation(task, src, written.metadata)
        return
    histo = load_histogram(src)
    bundle = _model(models, task, network_ndim(histo.shape), args.model)
    result = translate_histo(histo, task, bundle=bundle, progress=bar, **options)
    if result.metadata.get("model_warning"):
        print(f"exp2sim {task}: warning: {result.metadata['model_warning']}", file=sys.stderr)
    _warn_conservation(task, src, result.metadata)
    if args.model:
        result.metadata["model_file"] = str(Path(args.model).expanduser().absolute())
    result.metadata["source"] = str(src.absolute())
    save_histogram(result, dst)


def _warn_conservation(task: str, src: Path, metadata: dict) -> None:
    """Say on stderr when intensity conservation was skipped (it is recorded in the metadata too)."""
    from ..inference.conservation import conservation_warning

    warning = conservation_warning(metadata)
    if warning:
        print(f"exp2sim {task}: warning: {src}: {warning}", file=sys.stderr)


def _model(cache: dict, task: str, ndim: int, model: str | None) -> Any:
    """Load each bundle once per run (errors are cached too, so every file reports them)."""
    from ..bundle.resolve import generator_bundle

    if ndim not in cache:
        try:
            cache[ndim] = generator_bundle(task, ndim, model)
        except Exception as exc:  # noqa: BLE001 - re-raised below for every file of this ndim
            cache[ndim] = exc
    value = cache[ndim]
    if isinstance(value, Exception):
        raise value
    return value


def _planned(jobs: Sequence[tuple[Path, Path | None, str]], args: argparse.Namespace) -> list[PlannedOutput]:
    """The run's outputs for :func:`~mantid_exp2sim.io.output_paths.output_path_problems`."""
    out = Path(args.output).expanduser()
    planned: list[PlannedOutput] = []
    if _directory_mode(args.output):
        planned.append(PlannedOutput(out, "the --output folder", directory=True))
    extensions = STREAMABLE_EXTENSIONS if args.stream else SUPPORTED_EXTENSIONS
    for src, dst, _ in jobs:
        if dst is not None:
            planned.append(PlannedOutput(dst, f"the output of '{src}'", extensions))
    return planned


def run(task: str, args: argparse.Namespace) -> int:
    """Translate every input; returns the exit status.

    Every output path is checked against every input (and the model) before any work: when
    one cannot be written, nothing is done (exit status 1).
    """
    prefix = f"exp2sim {task}"
    try:
        jobs = plan_outputs(args.inputs, args.output, task, args.format)
    except ValueError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    problems = [f"{src}: {problem}" for src, dst, problem in jobs if dst is None]
    inputs = [src for src, _, _ in jobs] + ([args.model] if args.model else [])
    problems += output_path_problems(_planned(jobs, args), inputs, overwrite=args.overwrite)
    if problems:
        for line in problems:
            print(f"{prefix}: error: {line}", file=sys.stderr)
        return 1
    out = Path(args.output).expanduser().absolute()
    if _directory_mode(args.output) and not out.exists():
        try:
            out.mkdir()
        except OSError as exc:
            print(f"{prefix}: error: cannot create the output directory '{out}': {exc.strerror}", file=sys.stderr)
            return 1
    models: dict = {}
    failed = 0
    for src, dst, problem in jobs:
        if dst is None:
            print(f"{prefix}: {src}: {problem}", file=sys.stderr)
            failed += 1
            continue
        bar = _Bar(src.name, enabled=not args.quiet)
        try:
            _translate_one(src, dst, task, args, models, bar)
        except Exception as exc:  # noqa: BLE001 - one line per failed file, the batch goes on
            print(f"{prefix}: {src}: {failure_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        finally:
            bar.close()
        if not args.quiet:
            print(dst)
    if failed:
        print(f"{prefix}: {failed} of {len(jobs)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``exp2sim-translate TASK INPUT... --output PATH``; returns the exit status."""
    args = get_parser().parse_args(argv)
    return run(args.task, args)


def main_deconvolve(argv: Sequence[str] | None = None) -> int:
    """``exp2sim deconvolve``."""
    return run("deconvolve", get_parser("deconvolve").parse_args(argv))


def main_convolve(argv: Sequence[str] | None = None) -> int:
    """``exp2sim convolve``."""
    return run("convolve", get_parser("convolve").parse_args(argv))
