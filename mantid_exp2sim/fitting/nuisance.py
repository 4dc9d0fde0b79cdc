"""Nuisance parameters per group (incident energy), solved by variable projection.

The model of the data in group ``g`` (one incident energy: each was measured and normalised
separately, so its scale is not physics) is::

    m_i = a_g f_i(theta) + b_g [+ c_g e_i]

with ``f`` the spin-wave spectrum, ``a_g >= 0`` the scale (or ``a_g = 1`` with
``scale=False``, for data and model in the same absolute units), ``b_g`` a flat background and,
with ``background="linear"``, ``c_g`` a background slope along ``e_i``, the bin's energy
transfer as a fraction of Ei, centred on the group's mean (a smooth background).

**Variable projection** (Golub & Pereyra 1973): for a given ``theta`` the nuisances enter
linearly, so they are solved exactly by weighted linear least squares inside the residual,
group by group, and the optimiser only sees ``theta``. If the unconstrained scale of a group
comes out negative (the spectrum anti-correlates with the data there), the scale is set to 0
and the background refitted alone, so the model never turns a peak into a dip.

**Data clipped at zero** (``censored=True``: background-subtracted data whose negative values
were set to 0, like the released measurement). The expected value of a clipped observation is
not the model ``mu`` but ``E[max(0, mu + e)] = mu Phi(mu / s) + s phi(mu / s)`` for Gaussian
noise ``e`` of standard deviation ``s`` before clipping (``Phi``, ``phi`` the normal CDF and
density); fitting ``mu`` itself to clipped data biases every parameter (by up to 3 standard
errors on measured-like PCSMO spectra). With ``censored=True`` the model of the data is that
expectation, with ``s`` = the bin's error ``sigma`` (an approximation: the scatter after
clipping, which is smaller than before where zeros dominate). The nuisances are then no
longer linear: each group's are solved by Gauss-Newton from the linear solution (a few
iterations of a 2-3 parameter problem: cheap next to the spectrum), still inside the
residual. Derivatives carry the factor ``d E / d mu = Phi(mu / s)``.

At the optimum, the errors of all parameters (``theta`` and the nuisances) come from the
full Jacobian ``[d r / d theta (nuisances fixed), d r / d nuisances]``: its ``theta`` block
is ``a_g d f / d theta`` and its nuisance block is the design matrix, both weighted. The
``theta`` block of ``(J^T J)^-1`` equals the variable-projection covariance, and the
nuisance errors include their correlation with ``theta``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["NuisanceModel", "BACKGROUNDS"]

#: Allowed ``background`` choices.
BACKGROUNDS = ("flat", "linear", "none")


class NuisanceModel:
    """Per-group scale and background of the module notes.

    Parameters
    ----------
    groups
        Shape ``(n,)`` integer group of every fitted bin (``0 .. n_groups - 1``).
    group_names
        Names of the groups (e.g. ``"Ei=25"``).
    background
        ``"flat"`` (default), ``"linear"`` (flat + slope along ``energy``) or ``"none"``.
    energy
        Shape ``(n,)``: the bin's energy transfer as a fraction of Ei (needed for
        ``"linear"``).
    scale
        Fit a scale per group (default); False holds it at 1.
    censored
        The data were clipped at zero: fit the clipped expectation (see the module notes).
    clip_sigma
        Shape ``(n,)``: the noise ``s`` before clipping of each bin for the clipped
        expectation (default: the bins' errors).
    """

    def __init__(self, groups: np.ndarray, group_names: Sequence[str], *, background: str = "flat",
                 energy: np.ndarray | None = None, scale: bool = True, censored: bool = False,
                 clip_sigma: np.ndarray | None = None) -> None:
        if background not in BACKGROUNDS:
            raise InputDataError(format_error(
                "background is invalid", reason=f"got {background!r}; allowed: {', '.join(BACKGROUNDS)}",
                fix="use 'flat' (one constant per incident energy), 'linear' or 'none'"))
        self.groups = np.asarray(groups, dtype=int).reshape(-1)
        self.group_names = list(group_names)
        self.background = background
        self.fit_scale = bool(scale)
        self.censored = bool(censored)
        self.clip_sigma = None if clip_sigma is None else np.asarray(clip_sigma, dtype=float).reshape(-1)
        self.n_groups = len(self.group_names)
        if background == "linear":
            if energy is None:
                raise InputDataError(format_error(
                    "background='linear' needs the bins' energies",
                    reason="this data set has no energy coordinate", fix="use background='flat'"))
            e = np.asarray(energy, dtype=float).reshape(-1)
            self.energy = e.copy()
            for g in range(self.n_groups):
                sel = self.groups == g
                if sel.any():
                    self.energy[sel] = e[sel] - e[sel].mean()
        else:
            self.energy = None
        self.index = [np.flatnonzero(self.groups == g) for g in range(self.n_groups)]
        self.per_group = int(self.fit_scale) + (background != "none") + (background == "linear")
        for g, idx in enumerate(self.index):
            if idx.size < self.per_group + 1:
                raise InputDataError(format_error(
                    f"Group {self.group_names[g]!r} has too few bins",
                    reason=f"{idx.size} bins for {self.per_group} nuisance parameters",
                    fix="unmask more bins or drop that incident energy"))

    @property
    def names(self) -> list[str]:
        """Nuisance parameter names, group by group: ``scale[g]``, ``background[g]``, ``slope[g]``."""
        out = []
        for g in self.group_names:
            if self.fit_scale:
                out.append(f"scale[{g}]")
            if self.background != "none":
                out.append(f"background[{g}]")
            if self.background == "linear":
                out.append(f"slope[{g}]")
        return out

    @property
    def n_parameters(self) -> int:
        """Number of nuisance parameters."""
        return self.per_group * self.n_groups

    def _columns(self, f: np.ndarray, idx: np.ndarray) -> np.ndarray:
        cols = [f[idx]] if self.fit_scale else []
        if self.background != "none":
            cols.append(np.ones(idx.size))
        if self.background == "linear":
            cols.append(self.energy[idx])
        return np.stack(cols, axis=1) if cols else np.zeros((idx.size, 0))

    def _s(self, idx: np.ndarray | slice, sw: np.ndarray) -> np.ndarray:
        return 1.0 / sw if self.clip_sigma is None else self.clip_sigma[idx]

    def link(self, mu: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected data for the model ``mu`` (noise ``s`` before clipping) and its derivative.

        Identity (and 1) unless censored; then ``mu Phi(mu/s) + s phi(mu/s)`` and ``Phi(mu/s)``.
        """
        if not self.censored:
            return mu, np.ones_like(mu)
        from scipy.special import ndtr

        z = mu / s
        cdf = ndtr(z)
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        return mu * cdf + s * pdf, cdf

    def solve(self, f: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best nuisances for the spectrum ``f`` and the model they give.

        Parameters
        ----------
        f, y
            Model spectrum and data at the fitted bins, shape ``(n,)``.
        sw
            ``1 / sigma``, shape ``(n,)``.

        Returns
        -------
        values
            Shape ``(n_groups, per_group)``: scale (if fitted), background [, slope] of each
            group.
        model
            Shape ``(n,)``: ``a_g f + b_g [+ c_g e]``, or its clipped expectation when
            censored (see :meth:`link`).
        """
        values = np.zeros((self.n_groups, self.per_group))
        model = np.zeros_like(y)
        for g, idx in enumerate(self.index):
            X = self._columns(f, idx)
            fixed = np.zeros(idx.size) if self.fit_scale else f[idx]
            if X.shape[1] == 0:
                model[idx] = fixed
                continue
            A = X * sw[idx, None]
            b = (y[idx] - fixed) * sw[idx]
            coef = np.linalg.lstsq(A, b, rcond=None)[0]
            if self.fit_scale and (coef[0] < 0 or not np.any(X[:, 0])):
                coef = np.zeros(self.per_group)
                if self.per_group > 1:
                    coef[1:] = np.linalg.lstsq(A[:, 1:], b, rcond=None)[0]
            s_g = self._s(idx, sw[idx])
            if self.censored:
                coef = self._censored_group(X, fixed, y[idx], sw[idx], s_g, coef)
            values[g] = coef
            model[idx] = self.link(X @ coef + fixed, s_g)[0]
        return values, model

    def predictor(self, f: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The model before the link, ``a_g f + b_g [+ c_g e]``, at the fitted bins."""
        mu = np.zeros(f.size) if self.fit_scale else f.astype(float).copy()
        for g, idx in enumerate(self.index):
            mu[idx] += self._columns(f, idx) @ values[g]
        return mu

    def link_derivative(self, f: np.ndarray, values: np.ndarray, sw: np.ndarray) -> np.ndarray:
        """``d(expected data) / d(model)`` at the fitted bins (1 unless censored)."""
        return self.link(self.predictor(f, values), self._s(slice(None), sw))[1]

    def _censored_group(self, X: np.ndarray, fixed: np.ndarray, y: np.ndarray, sw: np.ndarray, s: np.ndarray,
                        coef: np.ndarray, iterations: int = 12) -> np.ndarray:
        """Gauss-Newton for one group's nuisances under the clipped link (scale kept >= 0)."""
        def cost(c: np.ndarray) -> float:
            return float(np.sum(((y - self.link(X @ c + fixed, s)[0]) * sw) ** 2))

        best = cost(coef)
        for _ in range(iterations):
            m, d = self.link(X @ coef + fixed, s)
            A = X * (d * sw)[:, None]
            step = np.linalg.lstsq(A, (y - m) * sw, rcond=None)[0]
            for t in (1.0, 0.5, 0.25, 0.125):
                trial = coef + t * step
                if self.fit_scale and trial[0] < 0:
                    trial[0] = 0.0
                c = cost(trial)
                if c < best:
                    break
            else:
                break
            converged = best - c <= 1e-12 * max(best, 1.0)
            coef, best = trial, c
            if converged:
                break
        return coef

    def design(self, f: np.ndarray) -> np.ndarray:
        """``d model / d nuisances``, shape ``(n, n_parameters)`` (unweighted)."""
        D = np.zeros((f.size, self.n_parameters))
        for g, idx in enumerate(self.index):
            D[idx, g * self.per_group:(g + 1) * self.per_group] = self._columns(f, idx)
        return D

    def scales(self, values: np.ndarray) -> np.ndarray:
        """Per-bin scale ``a_g`` of the fitted bins, shape ``(n,)`` (1 when not fitted)."""
        return values[self.groups, 0] if self.fit_scale else np.ones(self.groups.size)
