"""ResolutionDeconvolveGAN: remove the instrument resolution from a measured INS spectrum (Exp2Sim)."""

from ._translate_base import translation_algorithm

__all__ = ["ResolutionDeconvolveGAN"]

ResolutionDeconvolveGAN = translation_algorithm("deconvolve")
