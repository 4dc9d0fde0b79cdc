"""Building MDHistoWorkspaces in the algorithm tests (a helper module, not a test module)."""

import numpy as np


def make_ws(simpleapi, signal, dims, name="in_ws", errors=None):
    """An MDHistoWorkspace with ``getSignalArray() == signal`` (dimension 0 first).

    ``dims`` holds ``(name, unit, frame, minimum, maximum)`` per dimension; ``errors`` are
    sigmas (default 1 everywhere).
    """
    signal = np.asarray(signal, dtype=float)
    errors = np.ones(signal.shape) if errors is None else np.asarray(errors, dtype=float)
    extents = []
    for d in dims:
        extents += [d[3], d[4]]
    return simpleapi.CreateMDHistoWorkspace(
        SignalInput=signal.ravel(order="F"),
        ErrorInput=errors.ravel(order="F"),
        Dimensionality=signal.ndim,
        Extents=extents,
        NumberOfBins=list(signal.shape),
        Names=[d[0] for d in dims],
        Units=[d[1] for d in dims],
        Frames=[d[2] for d in dims],
        OutputWorkspace=name,
    )
