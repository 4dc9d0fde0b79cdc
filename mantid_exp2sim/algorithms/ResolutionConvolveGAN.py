"""ResolutionConvolveGAN: add the instrument resolution to a simulated INS spectrum (Sim2Exp)."""

from mantid.api import PythonAlgorithm

from . import _translate_base as _base

__all__ = ["ResolutionConvolveGAN"]

_TASK = "convolve"


class ResolutionConvolveGAN(PythonAlgorithm):
    """Exp2SimGAN generator, simulated -> measurement-like (resolution added).

    Every framework method is defined here, not inherited: Mantid only calls the ones in
    the class's own body.
    """

    def category(self):
        return _base.CATEGORY

    def summary(self):
        return (
            "Adds the instrument resolution to a simulated inelastic neutron scattering spectrum "
            "(2D or 3D MDHistoWorkspace) with an Exp2SimGAN generator."
        )

    def seeAlso(self):
        return ["ResolutionDeconvolveGAN"]

    def version(self):
        return 1

    def PyInit(self):
        _base.declare_properties(self, _TASK)

    def validateInputs(self):
        return _base.validate_inputs(self, _TASK)

    def PyExec(self):
        _base.execute(self, _TASK)
