"""Tolerances that the linear algebra can promise, shared by the simulator's tests.

Two evaluations of the same physics that go through *separate* calls of the eigen-solver
(other batch shapes, other but equivalent matrices, another code path) do not agree to the
last bits. Eigenvalues of a Hermitian matrix are perturbed by about ``eps * ||H||``, but
eigenvectors, and so mode intensities, by about ``eps * ||H|| / gap``, where ``gap`` is the
distance to the nearest other mode. PCSMO's 32 modes have near-crossings with gaps of
1e-4..1e-3 of the band width, so intensities through two paths agree to 1e-12..1e-7
relative depending on the BLAS/LAPACK build (9.8e-8 was measured on one OpenBLAS build where
the developers' machines gave 1e-12). Any physics error (a wrong twin weight, structure
factor or L) changes intensities by percent, so 1e-6 keeps a margin of ten over the numerics
and still catches every real defect.
"""

#: relative tolerance for eigenvector-derived quantities computed through two solver calls
EIGEN_CROSS_PATH_RTOL = 1e-6
