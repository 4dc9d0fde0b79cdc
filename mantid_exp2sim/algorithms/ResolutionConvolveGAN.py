"""ResolutionConvolveGAN: add the instrument resolution to a simulated INS spectrum (Sim2Exp)."""

from ._translate_base import translation_algorithm

__all__ = ["ResolutionConvolveGAN"]

ResolutionConvolveGAN = translation_algorithm("convolve")
