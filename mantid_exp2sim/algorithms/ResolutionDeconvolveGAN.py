"""ResolutionDeconvolveGAN: remove the instrument resolution from a measured INS spectrum (Exp2Sim)."""

from mantid.api import PythonAlgorithm

from . import _translate_base as _base

__all__ = ["ResolutionDeconvolveGAN"]

_TASK = "deconvolve"


class ResolutionDeconvolveGAN(PythonAlgorithm):
    """Exp2SimGAN generator, measured -> simulation-like (resolution removed).

    Every framework method is defined here, not inherited: Mantid only calls the ones in
    the class's own body.
    """

    def category(self):
        return _base.CATEGORY

    def summary(self):
        return (
            "Removes the instrument resolution from an inelastic neutron scattering spectrum "
            "(2D or 3D MDHistoWorkspace) with an Exp2SimGAN generator."
        )

    def seeAlso(self):
        return ["ResolutionConvolveGAN"]

    def version(self):
        return 1

    def PyInit(self):
        _base.declare_properties(self, _TASK)

    def validateInputs(self):
        return _base.validate_inputs(self, _TASK)

    def PyExec(self):
        _base.execute(self, _TASK)
