"""Resolution test doubles shared by the spectra tests (a helper module, not a test module)."""

import numpy as np

from mantid_exp2sim.simulate.resolution import ResolutionModel


class FixedResolution(ResolutionModel):
    """Constant covariance (for hand-checkable tests)."""

    kind = "fixed"

    def __init__(self, cov):
        super().__init__(0.1)
        self.cov = np.asarray(cov, float)

    def covariance(self, qh, qk, e, ei):
        shape = np.broadcast_shapes(np.shape(qh), np.shape(qk), np.shape(e))
        return np.broadcast_to(self.cov, shape + (3, 3)).copy()


#: A broad resolution with Q-E correlations.
WIDE = FixedResolution([[4e-4, 0, 0.004], [0, 3e-4, -0.003], [0.004, -0.003, 1.5]])
