"""The ``--plot FILE`` option that ``exp2sim fit`` and ``exp2sim score`` share."""

from __future__ import annotations

import os
from typing import Iterable

from ..errors import MissingDependencyError, require
from ..io.output_paths import PlannedOutput, output_path_problems

__all__ = ["PLOT_EXTENSIONS", "plot_problems"]

#: Figure formats ``--plot`` writes (matplotlib's own backends, no extra packages).
PLOT_EXTENSIONS = (".png", ".pdf", ".svg", ".eps", ".ps")


def plot_problems(plot: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, overwrite: bool) -> list[str]:
    """Why ``--plot`` cannot be written (one line each; empty when it can), before any work.

    Checks the path against the run's inputs (see
    :func:`~mantid_exp2sim.io.output_paths.output_path_problems`), its extension against
    :data:`PLOT_EXTENSIONS`, and that matplotlib is installed.
    """
    problems = output_path_problems([PlannedOutput(plot, "the --plot", PLOT_EXTENSIONS)], inputs,
                                    overwrite=overwrite)
    try:
        require("matplotlib", extra="plot", feature="--plot")
    except MissingDependencyError as exc:
        problems.append(str(exc))
    return problems
