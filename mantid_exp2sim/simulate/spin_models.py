"""Named spin-wave models of the simulator: parameters, sampling, spectra, twins.

``get_model(name)`` returns a :class:`SpinModel` (or a model another installed package
registers under the entry-point group :data:`ENTRY_POINT_GROUP`); ``list_models()`` lists the
names.

Every model is a parameterised :class:`~mantid_exp2sim.simulate.lswt.SpinSystem`
(Hamiltonian ``H = sum_bonds J S_i.S_j + sum_i S_i.A_i.S_i``, each bond once,
**J > 0 antiferromagnetic**, energies in meV) plus the crystallographic cell used
for the user-facing r.l.u. and the twin domains present in the sample.

Spectra are returned as ``(energies, intensities)``, both ``(n, n_modes)``, where
``n_modes = n_twins * n_sites`` (twin blocks concatenated along the mode axis, twin 1
first) and the intensity of each mode is the LSWT one-magnon weight per magnetic
site, ``S_perp`` including ``|F(Q)|^2`` (see :mod:`~mantid_exp2sim.simulate.lswt`),
multiplied by the twin's volume fraction. Energies are sorted ascending within each
twin block. Units: meV and spin units per magnetic site (per meV once spread over an
energy bin); the scale is identical for all models.

Coordinates: ``qh, qk`` in r.l.u. of the model's crystallographic cell
(``model.lattice``), ``l`` in r.l.u. of ``c*``; Cartesian ``Q = 2 pi (qh/a, qk/b, l/c)``
with x || a, y || b, z || c of twin 1. Twin t is the crystal rotated by the proper
rotation ``R_t``; its spectrum at lab ``Q`` is the twin-1 model evaluated at
``R_t^T Q``.

Kinematic L (MAPS geometry, c || k_i): each in-plane ``(Qh, Qk)`` at energy
transfer E is measured at ``L = c / 2 pi * (k_i - sqrt(k_f^2 - Q_perp^2))`` with
``k^2 = E / 2.0723`` (k in 1/Angstrom, E in meV). :meth:`SpinModel.spectrum_kinematic`
evaluates each mode's intensity at the L fixed by its own energy; modes with
``k_f^2 < Q_perp^2`` (or E > E_i) are kinematically inaccessible and get intensity 0.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from . import _pcsmo, _square_lattice
from .lswt import Modes, SpinSystem, UnstableGroundStateError, _compile, diagonalise
from .model_contract import check_model, missing_contract

__all__ = [
    "SpinModel",
    "TwinDomain",
    "LatticeInfo",
    "TwinModes",
    "get_model",
    "list_models",
    "ENTRY_POINT_GROUP",
    "kinematic_qc",
    "with_twin_fraction",
    "E_TO_K2",
    "UnstableGroundStateError",
]

#: E [meV] = E_TO_K2 * k^2 [1/Angstrom^2] for neutrons (value used by the task spec).
E_TO_K2 = 2.0723


@dataclass(frozen=True)
class LatticeInfo:
    """Crystallographic (user-facing) cell lengths in Angstrom, orthogonal axes."""

    a: float
    b: float
    c: float


@dataclass(frozen=True)
class TwinDomain:
    """A crystallographic domain: proper rotation (3x3, lab <- twin-1 frame) and volume."""

    rotation: np.ndarray
    volume: float
    name: str = ""


def kinematic_qc(energies: np.ndarray, q_perp: np.ndarray, ei: float) -> np.ndarray:
    """Momentum transfer along the incident beam, ``Q_c = k_i - sqrt(k_f^2 - Q_perp^2)``.

    Parameters
    ----------
    energies
        Energy transfers in meV, any shape broadcastable with ``q_perp``.
    q_perp
        In-plane ``|Q|`` (perpendicular to k_i) in 1/Angstrom.
    ei
        Incident energy in meV (> 0).

    Returns
    -------
    numpy.ndarray
        ``Q_c`` in 1/Angstrom, NaN where the point is kinematically inaccessible
        (``E > E_i`` or ``k_f^2 < Q_perp^2``).
    """
    if not (np.isfinite(ei) and ei > 0):
        raise InputDataError(format_error(
            "Incident energy ei must be a positive number (meV)", reason=f"got {ei!r}",
            fix="pass e.g. ei=70.0"))
    ki = np.sqrt(ei / E_TO_K2)
    kf2 = (ei - np.asarray(energies, dtype=float)) / E_TO_K2
    arg = kf2 - np.asarray(q_perp, dtype=float) ** 2
    with np.errstate(invalid="ignore"):
        return np.where(arg >= 0, ki - np.sqrt(np.where(arg >= 0, arg, 0.0)), np.nan)


class TwinModes:
    """Modes of all twins at a set of in-plane wave vectors (one diagonalisation).

    Created by :meth:`SpinModel.modes`; evaluate intensities at any ``l`` or at the
    kinematic ``l`` for any incident energy without diagonalising again.

    Attributes
    ----------
    q_lab
        (n, 3) Cartesian lab Q (1/Angstrom) of the diagonalisation (l as given).
    energies
        (n, n_modes) meV, twin blocks concatenated.
    """

    def __init__(self, model: "SpinModel", q_lab: np.ndarray, per_twin: list[Modes]):
        self.model = model
        self.q_lab = q_lab
        self._per_twin = per_twin
        self.energies = np.concatenate([m.energies for m in per_twin], axis=1)

    @property
    def n_modes(self) -> int:
        return self.energies.shape[1]

    @property
    def per_twin(self) -> tuple[Modes, ...]:
        """The :class:`~mantid_exp2sim.simulate.lswt.Modes` of each twin (twin frame,
        unweighted intensities)."""
        return tuple(self._per_twin)

    def _eval(self, q_lab_per_mode: list[np.ndarray]) -> np.ndarray:
        out = []
        for twin, modes, ql in zip(self.model.twins, self._per_twin, q_lab_per_mode):
            qt = ql @ np.asarray(twin.rotation)  # rows: R^T Q
            out.append(twin.volume * modes.intensities(qt))
        return np.concatenate(out, axis=1)

    def intensities(self, l: np.ndarray | float | None = None) -> np.ndarray:
        """(n, n_modes) intensities at the same (qh, qk) and ``l`` (r.l.u.; scalar,
        (n,) or (n, n_modes)); None keeps the diagonalisation l."""
        n = len(self.q_lab)
        if l is None:
            lq = [np.broadcast_to(self.q_lab[:, None, :], (n, m.n_modes, 3)) for m in self._per_twin]
            return self._eval(lq)
        l = np.asarray(l, dtype=float)
        if l.ndim == 1:
            l = l[:, None]
        try:
            lm = np.broadcast_to(l, (n, self.n_modes))
        except ValueError:
            raise InputDataError(format_error(
                "l does not match the diagonalised points", reason=f"shape {l.shape} for {n} points "
                f"and {self.n_modes} modes", fix="give a scalar, (n,) or (n, n_modes) array")) from None
        if not np.all(np.isfinite(lm)):
            raise InputDataError(format_error("l must be finite", reason="found NaN or infinity",
                                              fix="remove non-finite values"))
        return self._eval(self._split_q(2 * np.pi * lm / self.model.lattice.c))

    def _split_q(self, qc: np.ndarray) -> list[np.ndarray]:
        out, start = [], 0
        for m in self._per_twin:
            q = np.empty((len(self.q_lab), m.n_modes, 3))
            q[..., :2] = self.q_lab[:, None, :2]
            q[..., 2] = qc[:, start:start + m.n_modes]
            out.append(q)
            start += m.n_modes
        return out

    def kinematic_l(self, ei: float) -> np.ndarray:
        """(n, n_modes) kinematic l (r.l.u.) of each mode at incident energy ``ei``
        (meV); NaN where inaccessible."""
        qperp = np.hypot(self.q_lab[:, 0], self.q_lab[:, 1])
        qc = kinematic_qc(self.energies, qperp[:, None], ei)
        return qc * self.model.lattice.c / (2 * np.pi)

    def intensities_kinematic(self, ei: float) -> np.ndarray:
        """(n, n_modes) intensities at each mode's kinematic l; 0 where inaccessible."""
        qperp = np.hypot(self.q_lab[:, 0], self.q_lab[:, 1])
        qc = kinematic_qc(self.energies, qperp[:, None], ei)
        ok = np.isfinite(qc)
        inten = self._eval(self._split_q(np.where(ok, qc, 0.0)))
        return np.where(ok, inten, 0.0)

    def velocities(self) -> np.ndarray:
        """(n, n_modes, 3) group velocities dE/dQ in the lab frame, meV Angstrom."""
        out = []
        for twin, modes in zip(self.model.twins, self._per_twin):
            v = modes.velocities()  # twin frame
            out.append(v @ np.asarray(twin.rotation).T)  # lab: R v
        return np.concatenate(out, axis=1)

    def velocities_rlu(self) -> np.ndarray:
        """(n, n_modes, 2) ``(dE/dqh, dE/dqk)`` in meV per r.l.u. of the model cell."""
        v = self.velocities()
        lat = self.model.lattice
        return np.stack([v[..., 0] * 2 * np.pi / lat.a, v[..., 1] * 2 * np.pi / lat.b], axis=-1)


class SpinModel:
    """A named, parameterised spin-wave model (see the module docstring).

    Attributes
    ----------
    name
        Registry name.
    parameter_names
        Ordered parameter names.
    defaults
        Published parameter values (meV), ``{name: value}``.
    ranges
        Uniform sampling ranges ``{name: (low, high)}`` (meV), inclusive.
    lattice
        :class:`LatticeInfo` of the crystallographic cell (r.l.u. of ``qh, qk, l``).
    twins
        The :class:`TwinDomain` list (volumes sum to 1).
    references
        Literature for the model and its parameters.
    """

    def __init__(self, name: str, parameter_names: Sequence[str], defaults: Mapping[str, float],
                 ranges: Mapping[str, tuple[float, float]], lattice: LatticeInfo,
                 twins: Sequence[TwinDomain], builder: Callable[..., SpinSystem],
                 description: str, references: Sequence[str]):
        self.name = name
        self.parameter_names = tuple(parameter_names)
        self.defaults = dict(defaults)
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}
        self.lattice = lattice
        self.twins = tuple(twins)
        self._builder = builder
        self.description = description
        self.references = tuple(references)
        self.__doc__ = description + "\n\nReferences\n----------\n" + "\n".join(
            f"* {r}" for r in references)

    def __repr__(self) -> str:
        return f"SpinModel({self.name!r}, parameters={list(self.parameter_names)})"

    @property
    def n_parameters(self) -> int:
        return len(self.parameter_names)

    @property
    def n_modes(self) -> int:
        """Modes per Q point (all twins)."""
        return len(self.twins) * self.build_system(self.defaults).n_sites

    # -------------------------------------------------------------- parameters
    def validate(self, params) -> np.ndarray:
        """Check parameters and return them as a float array in ``parameter_names`` order.

        Parameters
        ----------
        params
            Mapping ``{name: value}`` with exactly the model's names, or a sequence
            of ``n_parameters`` values in order.

        Raises
        ------
        InputDataError
            (a ``ValueError``) naming the parameter, its value and the allowed range
            for missing, unknown, non-finite or out-of-range values.
        """
        names = self.parameter_names
        if isinstance(params, Mapping):
            missing = [k for k in names if k not in params]
            extra = [k for k in params if k not in names]
            if missing or extra:
                raise InputDataError(format_error(
                    f"Parameters of model {self.name!r} do not match its parameter names",
                    reason=f"missing {missing}, unknown {extra}; expected {list(names)}",
                    fix="give every parameter exactly once"))
            values = [params[k] for k in names]
        else:
            try:
                values = list(np.asarray(params, dtype=float).reshape(-1)) \
                    if not isinstance(params, (str, bytes)) else None
            except (TypeError, ValueError):
                values = None
            if values is None or len(values) != len(names):
                raise InputDataError(format_error(
                    f"Parameters of model {self.name!r} must be a mapping or {len(names)} numbers",
                    reason=f"got {params!r}", fix=f"give values for {list(names)} in that order"))
        out = np.empty(len(names))
        for k, (name, v) in enumerate(zip(names, values)):
            lo, hi = self.ranges[name]
            try:
                x = float(v)
            except (TypeError, ValueError):
                x = float("nan")
            if not np.isfinite(x):
                raise InputDataError(format_error(
                    f"Parameter {name!r} of model {self.name!r} is not a finite number",
                    reason=f"got {v!r}; allowed range [{lo}, {hi}] meV", fix="give a finite value"))
            if not (lo <= x <= hi):
                raise InputDataError(format_error(
                    f"Parameter {name!r} of model {self.name!r} is out of range",
                    reason=f"got {x!r} meV; allowed range [{lo}, {hi}] meV",
                    fix="choose a value inside the range"))
            out[k] = x
        return out

    def as_dict(self, params) -> dict[str, float]:
        """Validated parameters as ``{name: value}``."""
        return dict(zip(self.parameter_names, self.validate(params).tolist()))

    def sample(self, rng: np.random.Generator, *, stable_only: bool = False,
               max_tries: int = 1000) -> np.ndarray:
        """Draw parameters uniformly from ``ranges`` (float array in name order).

        Parameters
        ----------
        rng
            ``numpy.random.Generator``; the draw is deterministic for a given state.
        stable_only
            Reject draws whose ordered state is unstable (:meth:`is_stable`), i.e.
            sample uniformly from the stable part of the box.
        max_tries
            Give up (:class:`InputDataError`) after this many rejections.
        """
        if not isinstance(rng, np.random.Generator):
            raise InputDataError(format_error(
                "sample() needs a numpy.random.Generator", reason=f"got {type(rng).__name__}",
                fix="pass numpy.random.default_rng(seed)"))
        lo = np.array([self.ranges[k][0] for k in self.parameter_names])
        hi = np.array([self.ranges[k][1] for k in self.parameter_names])
        for _ in range(max(1, max_tries)):
            p = lo + (hi - lo) * rng.random(len(lo))
            if not stable_only or self.is_stable(p):
                return p
        raise InputDataError(format_error(
            f"No stable parameter set of model {self.name!r} found",
            reason=f"{max_tries} uniform draws all gave unstable ordered states",
            fix="widen max_tries or check the ranges"))

    def build_system(self, params) -> SpinSystem:
        """The twin-1 :class:`SpinSystem` for validated ``params``."""
        return self._builder(**self.as_dict(params))

    def is_stable(self, params, n_grid: int = 12) -> bool:
        """True if the LSWT Hamiltonian is positive (semi-)definite on an
        ``n_grid x n_grid`` grid over the in-plane magnetic Brillouin zone (the
        ordered state is a local classical minimum there)."""
        system = self.build_system(params)
        recip = system.reciprocal_lattice()
        f = (np.arange(n_grid) + 0.5) / n_grid - 0.5
        f1, f2 = np.meshgrid(f, f, indexing="ij")
        q = f1.reshape(-1, 1) * recip[0] + f2.reshape(-1, 1) * recip[1]
        q = np.vstack([np.zeros((1, 3)), q])
        modes = diagonalise(system, q, on_unstable="nan")
        return bool(np.all(np.isfinite(modes.energies)))

    # ----------------------------------------------------------------- spectra
    def q_cartesian(self, qh, qk, l=0.0) -> np.ndarray:
        """(n, 3) Cartesian lab Q (1/Angstrom) from r.l.u. (broadcast, flattened)."""
        qh, qk, l = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (qh, qk, l)))
        if not (np.all(np.isfinite(qh)) and np.all(np.isfinite(qk)) and np.all(np.isfinite(l))):
            raise InputDataError(format_error(
                "qh, qk and l must be finite", reason="found NaN or infinity",
                fix="remove non-finite wave vectors"))
        lat = self.lattice
        return np.stack([2 * np.pi * qh.ravel() / lat.a, 2 * np.pi * qk.ravel() / lat.b,
                         2 * np.pi * l.ravel() / lat.c], axis=1)

    def modes(self, params, qh, qk, l=0.0) -> TwinModes:
        """Diagonalise once for all twins at ``(qh, qk, l)``; reuse the result for
        intensities at other ``l``, kinematic ``l`` for several ``E_i`` and velocities.

        Raises :class:`UnstableGroundStateError` (a ``ValueError``) if the parameters
        do not give a stable ordered state.
        """
        system = self.build_system(params)
        q_lab = self.q_cartesian(qh, qk, l)
        per_twin = []
        comp = _compile(system)  # compiled once, shared by the twins
        for twin in self.twins:
            per_twin.append(diagonalise(comp, q_lab @ np.asarray(twin.rotation)))
        return TwinModes(self, q_lab, per_twin)

    def spectrum(self, params, qh, qk, l) -> tuple[np.ndarray, np.ndarray]:
        """Energies and intensities ``(n, n_modes)`` at ``(qh, qk, l)`` (r.l.u.)."""
        m = self.modes(params, qh, qk, l)
        return m.energies, m.intensities()

    def spectrum_kinematic(self, params, qh, qk, ei: float) -> tuple[np.ndarray, np.ndarray]:
        """Energies and intensities ``(n, n_modes)`` at in-plane ``(qh, qk)`` with each
        mode's intensity taken at its kinematic ``l`` for incident energy ``ei`` (meV);
        inaccessible modes are returned with intensity 0."""
        m = self.modes(params, qh, qk, 0.0)
        return m.energies, m.intensities_kinematic(ei)


def with_twin_fraction(model: Any, fraction: float | None) -> Any:
    """The model with twin volumes ``(fraction, 1 - fraction)``; the model itself for None.

    The twin operation (``R_t``, a proper rotation keeping the kinematic L) is unchanged, only
    the volume fractions that multiply each twin's intensities. ``fraction = 1`` is twin 1
    alone. A shallow copy is returned; the model is not modified.

    Raises
    ------
    InputDataError
        ``fraction`` outside [0, 1] or not finite, or the model does not have exactly two
        twin domains.
    """
    if fraction is None:
        return model
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not (np.isfinite(f) and 0.0 <= f <= 1.0):
        raise InputDataError(format_error(
            "twin_fraction is invalid", reason=f"got {fraction!r}; need the volume of twin 1 in [0, 1]",
            fix="use e.g. 0.5 (equal twins, the models' own default) or None"))
    twins = getattr(model, "twins", None)
    if twins is None or len(twins) != 2:
        raise InputDataError(format_error(
            "twin_fraction needs a model with two twin domains",
            reason=f"model {getattr(model, 'name', model)!r} has "
                   f"{'no' if twins is None else len(twins)} twin domain(s)",
            fix="leave twin_fraction=None for this model"))
    out = copy.copy(model)
    out.twins = (dataclasses.replace(twins[0], volume=f), dataclasses.replace(twins[1], volume=1.0 - f))
    return out


# ------------------------------------------------------------------- registry

_IDENTITY = np.eye(3)
#: a <-> b twin as a proper rotation (x <-> y, z -> -z; det = +1).
AB_TWIN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
_PCSMO_TWINS = (TwinDomain(_IDENTITY, 0.5, "twin-1"), TwinDomain(AB_TWIN, 0.5, "twin-2 (a<->b)"))
_PCSMO_REFS = (
    "G. E. Johnstone, T. G. Perring, O. Sikora, D. Prabhakaran and A. T. Boothroyd, "
    "Phys. Rev. Lett. 109, 237202 (2012): published exchange constants (fits).",
    "K. T. Butler, M. D. Le, J. Thiyagalingam and T. G. Perring, 'Interpretable, calibrated "
    "neural networks for analysis and understanding of inelastic neutron scattering data' "
    "(2021): Table 1, published values and sampling ranges (J > 0 antiferromagnetic).",
    "S. Toth and B. Lake, J. Phys.: Condens. Matter 27, 166002 (2015): LSWT formalism.",
)


def _goodenough() -> SpinModel:
    names = ("JF1", "JA", "JF2", "JF3", "Jperp", "D")
    return SpinModel(
        "goodenough", names,
        dict(zip(names, (-11.39, 1.5, -1.35, 1.5, 0.88, 0.074))),
        {"JF1": (-20, 0), "JA": (0, 3), "JF2": (-3, 3), "JF3": (-3, 3), "Jperp": (0, 3), "D": (0, 0.2)},
        LatticeInfo(*_pcsmo.HT_CELL), _PCSMO_TWINS, _pcsmo.goodenough_system,
        "Goodenough model of CE-ordered Pr(Ca,Sr)2Mn2O7: JF1 ferromagnetic zig-zag NN bonds, "
        "JA antiferromagnetic inter-chain NN bonds, JF2 Mn4-Mn4 along the chain, JF3 Mn3-Mn3 "
        "along a, Jperp inter-layer, D hard-axis (c) single-ion anisotropy; 16 Mn with S = 7/4 "
        "in the 2x2x1 supercell of the HT cell, two a<->b twins of equal volume.",
        _PCSMO_REFS)


def _dimer() -> SpinModel:
    names = ("JFW", "JA1", "JA2", "JFS", "Jperp", "D")
    return SpinModel(
        "dimer", names,
        dict(zip(names, (-8.43, 1.52, 1.52, -14.2, 0.92, 0.073))),
        {"JFW": (-20, 0), "JA1": (-3, 3), "JA2": (-3, 3), "JFS": (-20, 0), "Jperp": (0, 3), "D": (0, 0.2)},
        LatticeInfo(*_pcsmo.HT_CELL), _PCSMO_TWINS, _pcsmo.dimer_system,
        "Dimer (Zener-polaron-like) model of CE-ordered Pr(Ca,Sr)2Mn2O7: ferromagnetic zig-zag "
        "bonds split into strong intra-dimer JFS and weak inter-dimer JFW, antiferromagnetic "
        "inter-chain bonds JA1 / JA2, Jperp inter-layer, D hard-axis (c) anisotropy; same "
        "structure and twins as 'goodenough'.",
        _PCSMO_REFS)


def _square() -> SpinModel:
    names = ("J1", "J2")
    return SpinModel(
        "square_j1j2", names, {"J1": 0.65, "J2": 0.0}, {"J1": (0, 1), "J2": (-0.2, 0.2)},
        LatticeInfo(*_square_lattice.SQUARE_CELL), (TwinDomain(_IDENTITY, 1.0, "single"),),
        _square_lattice.square_lattice_system,
        "Square-lattice J1-J2 Heisenberg antiferromagnet with Neel order, S = 5/2, Mn2+ form "
        "factor, Rb2MnF4-like cell (a = 4.2, c = 13.8 Angstrom), no anisotropy; the "
        "out-of-distribution family. Neel order is unstable for J2 > J1/2.",
        ("T. Huberman, R. Coldea, R. A. Cowley, D. A. Tennant, R. L. Leheny, R. J. Christianson "
         "and C. D. Frost, Phys. Rev. B 72, 014413 (2005): Rb2MnF4, a near-ideal S = 5/2 "
         "square-lattice Heisenberg antiferromagnet with J close to 0.65 meV.",
         "Exp2SimGAN paper (Digital Discovery, 2023), Methods 'Simulated INS data': J1 in "
         "[0, 1] meV, J2 in [-0.2, 0.2] meV, no anisotropy."))


_FACTORIES: dict[str, Callable[[], SpinModel]] = {
    "goodenough": _goodenough,
    "dimer": _dimer,
    "square_j1j2": _square,
}
_CACHE: dict[str, SpinModel] = {}

#: Entry-point group through which installed packages register their own spin models: in the
#: package's ``pyproject.toml``, ``[project.entry-points."mantid_exp2sim.spin_models"]`` with
#: ``mymodel = "mypackage.models:MyModel"`` (a model class, a model object or a function
#: returning one). The model is then ``"mymodel"`` everywhere, worker processes included.
ENTRY_POINT_GROUP = "mantid_exp2sim.spin_models"


def _entry_points() -> list[metadata.EntryPoint]:
    """The installed packages' entry points of :data:`ENTRY_POINT_GROUP`."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _registered() -> dict[str, metadata.EntryPoint]:
    """Registered third-party models by lower-case name (the built-in names cannot be taken)."""
    out: dict[str, metadata.EntryPoint] = {}
    for ep in _entry_points():
        key = ep.name.strip().lower()
        if key and key not in _FACTORIES:
            out.setdefault(key, ep)
    return out


def _load_entry_point(ep: metadata.EntryPoint) -> Any:
    """The model an entry point names: loaded, called if it is a class or factory, checked."""
    dist = getattr(getattr(ep, "dist", None), "name", None)
    where = f"The spin model {ep.name!r} registered by {f'the package {dist!r}' if dist else ep.value!r}"
    try:
        obj = ep.load()
        if isinstance(obj, type) or (missing_contract(obj) and callable(obj)):
            obj = obj()  # a model class or a factory, registered on purpose by its package
    except Exception as exc:  # noqa: BLE001 - third-party code: report whatever it raised
        raise InputDataError(
            format_error(
                f"{where} cannot be loaded",
                reason=f"{ep.value}: {type(exc).__name__}: {exc}",
                fix="reinstall or fix that package, or uninstall it",
            )
        ) from exc
    return check_model(obj, where)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`: the built-in models, then the registered ones."""
    return list(_FACTORIES) + sorted(_registered())


def get_model(name: str) -> Any:
    """The spin model called ``name`` (case-insensitive): built in or registered.

    Parameters
    ----------
    name
        One of :func:`list_models`; third-party models are registered under the entry-point
        group :data:`ENTRY_POINT_GROUP`.

    Raises
    ------
    InputDataError
        (a ``ValueError``) for an unknown name, listing the allowed ones, or a registered
        model that cannot be loaded or is not a spin model.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key in _CACHE:
        return _CACHE[key]
    if key in _FACTORIES:
        _CACHE[key] = _FACTORIES[key]()
        return _CACHE[key]
    registered = _registered() if key else {}
    if key not in registered:
        raise InputDataError(format_error(
            f"Unknown spin model {name!r}", reason=f"allowed models are {', '.join(list_models())}",
            fix=f"pick one of those names, or register a model under the entry-point group '{ENTRY_POINT_GROUP}'"))
    _CACHE[key] = _load_entry_point(registered[key])
    return _CACHE[key]
