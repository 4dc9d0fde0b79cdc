"""Test double of ``mantid.kernel``: directions, properties, validators, config, logging."""

from __future__ import annotations

import copy
import logging as _logging
import sys
from typing import Any

import numpy as np

__all__ = [
    "ConfigService",
    "DataItem",
    "Direction",
    "FloatArrayProperty",
    "FloatBoundedValidator",
    "IValidator",
    "IntArrayProperty",
    "IntBoundedValidator",
    "Logger",
    "Property",
    "PropertyWithValue",
    "StringArrayProperty",
    "StringListValidator",
    "StringMandatoryValidator",
    "config",
    "logger",
]


class Direction:
    """Property directions (``Direction.None`` exists too, set below)."""

    Input = 0
    Output = 1
    InOut = 2


setattr(Direction, "None", 3)

EMPTY_INT = 2**31 - 1
EMPTY_DBL = sys.float_info.max
EMPTY_LONG = 2**63 - 1


class DataItem:
    """Base of everything stored in a data service (workspaces)."""

    def name(self) -> str:  # pragma: no cover - overridden
        return ""


# ------------------------------------------------------------------------ logging
class Logger:
    """Mantid Logger: one method per priority, each taking one string."""

    def __init__(self, name: str):
        self._name = name
        self._py = _logging.getLogger(f"mantid.{name}")
        #: (priority, message) pairs, newest last (a test-double convenience).
        self.records: list[tuple[str, str]] = []

    def _log(self, level: str, pylevel: int, msg: str) -> None:
        if not isinstance(msg, str):
            raise TypeError(f"Logger.{level}() takes one str, got {type(msg).__name__}")
        self.records.append((level, msg))
        self._py.log(pylevel, msg)

    def fatal(self, msg: str) -> None:
        self._log("fatal", _logging.CRITICAL, msg)

    def error(self, msg: str) -> None:
        self._log("error", _logging.ERROR, msg)

    def warning(self, msg: str) -> None:
        self._log("warning", _logging.WARNING, msg)

    def notice(self, msg: str) -> None:
        self._log("notice", _logging.INFO, msg)

    def information(self, msg: str) -> None:
        self._log("information", _logging.INFO, msg)

    def debug(self, msg: str) -> None:
        self._log("debug", _logging.DEBUG, msg)


logger = Logger("Python")
# Records still propagate to handlers such as pytest's caplog; no stderr noise by default.
_logging.getLogger("mantid").addHandler(_logging.NullHandler())


# ------------------------------------------------------------------------- config
class ConfigService:
    """Dictionary-like configuration (``mantid.kernel.config``)."""

    _instance: "ConfigService | None" = None

    def __init__(self) -> None:
        self._values: dict[str, str] = {
            "user.python.plugins.directories": "",
            "python.plugins.manifest": "",
            "default.facility": "ISIS",
        }

    @classmethod
    def Instance(cls) -> "ConfigService":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __getitem__(self, key: str) -> str:
        return self._values.get(key, "")

    def __setitem__(self, key: str, value: str) -> None:
        self._values[key] = str(value)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str, default: str = "") -> str:
        return self._values.get(key, default)

    def getString(self, key: str, pathAbsolute: bool = True) -> str:
        return self._values.get(key, "")

    def setString(self, key: str, value: str) -> None:
        self._values[key] = str(value)

    def keys(self) -> list[str]:
        return list(self._values)


config = ConfigService.Instance()


# --------------------------------------------------------------------- validators
class IValidator:
    """Base validator: ``_check(value) -> ""`` when valid, else the message."""

    def _check(self, value: Any) -> str:  # pragma: no cover - overridden
        return ""

    def _allowed(self) -> list:
        return []


class StringListValidator(IValidator):
    """Value must be one of a list of strings (the constructor needs a Python list)."""

    def __init__(self, values: list | None = None):
        if values is None:
            values = []
        if not isinstance(values, list):
            # Boost.Python has no overload for tuples/sets: ArgumentError, a TypeError.
            raise TypeError(
                "Python argument types in StringListValidator.__init__ did not match C++ signature: "
                f"need a list, got {type(values).__name__}"
            )
        self._values = [str(v) for v in values]

    def allowedValues(self) -> list[str]:
        return list(self._values)

    def _allowed(self) -> list:
        return list(self._values)

    def _check(self, value: Any) -> str:
        if str(value) in self._values:
            return ""
        return f'The value "{value}" is not in the list of allowed values'


class _BoundedValidator(IValidator):
    _kind = "value"

    def __init__(self, lower: Any = None, upper: Any = None, exclusive: bool = False):
        self._lower = lower
        self._upper = upper
        self._exclusive = bool(exclusive)

    def hasLower(self) -> bool:
        return self._lower is not None

    def hasUpper(self) -> bool:
        return self._upper is not None

    def lower(self) -> Any:
        return self._lower

    def upper(self) -> Any:
        return self._upper

    def _check(self, value: Any) -> str:
        if self._lower is not None:
            bad = value <= self._lower if self._exclusive else value < self._lower
            if bad:
                op = "<=" if self._exclusive else "<"
                return f"Selected value {value} is {op} the lower bound of {self._lower}"
        if self._upper is not None:
            bad = value >= self._upper if self._exclusive else value > self._upper
            if bad:
                op = ">=" if self._exclusive else ">"
                return f"Selected value {value} is {op} the upper bound of {self._upper}"
        return ""


class IntBoundedValidator(_BoundedValidator):
    """Integer within [lower, upper] (either bound optional)."""


class FloatBoundedValidator(_BoundedValidator):
    """Float within [lower, upper] (either bound optional)."""


class StringMandatoryValidator(IValidator):
    """A string that must not be empty."""

    def _check(self, value: Any) -> str:
        return "" if str(value) else "A value must be entered for this parameter"


class _ArrayMandatoryValidator(IValidator):
    def _check(self, value: Any) -> str:
        return "" if len(value) else "A value must be entered for this parameter"


class FloatArrayMandatoryValidator(_ArrayMandatoryValidator):
    pass


class IntArrayMandatoryValidator(_ArrayMandatoryValidator):
    pass


class StringArrayMandatoryValidator(_ArrayMandatoryValidator):
    pass


# ---------------------------------------------------------------------- properties
class Property:
    """Base property. Attributes (not methods): name, isValid, isDefault, direction,
    valueAsStr, allowedValues, value, documentation."""

    EMPTY_INT = EMPTY_INT
    EMPTY_DBL = EMPTY_DBL
    EMPTY_LONG = EMPTY_LONG

    def __init__(self, name: str, direction: int = Direction.Input, validator: IValidator | None = None):
        self._name = str(name)
        self._direction = int(direction)
        self._validator = validator
        self._doc = ""
        self._group = ""
        self._settings: list = []

    # --- the attribute-style API
    @property
    def name(self) -> str:
        return self._name

    @property
    def direction(self) -> int:
        return self._direction

    @property
    def documentation(self) -> str:
        return self._doc

    @property
    def isValid(self) -> str:
        return self._is_valid()

    @property
    def isDefault(self) -> bool:
        return self._is_default()

    @property
    def valueAsStr(self) -> str:
        return self._as_str()

    @property
    def allowedValues(self) -> list:
        return self._validator._allowed() if self._validator is not None else []

    @property
    def value(self) -> Any:
        return self._get()

    def getGroup(self) -> str:
        return self._group

    # --- what subclasses implement
    def _get(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _set(self, value: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def _set_str(self, text: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _as_str(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def _is_default(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _is_valid(self) -> str:
        if self._validator is None:
            return ""
        return self._validator._check(self._get())

    def _assign(self, setter, value: Any) -> None:
        """Set, then revert and raise ValueError if the result is invalid (as Mantid does)."""
        saved = copy.copy(self.__dict__)
        setter(value)
        problem = self._is_valid()
        if problem:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise ValueError(problem)

    def _clone(self) -> "Property":
        return copy.deepcopy(self)


class PropertyWithValue(Property):
    """A scalar property: int, float, bool or str (type fixed by the default)."""

    def __init__(
        self,
        name: str,
        default: Any,
        validator: IValidator | None = None,
        direction: int = Direction.Input,
    ):
        super().__init__(name, direction, validator)
        if isinstance(default, bool):
            self._type = bool
        elif isinstance(default, (int, np.integer)):
            self._type = int
        elif isinstance(default, (float, np.floating)):
            self._type = float
        elif isinstance(default, str):
            self._type = str
        else:
            raise TypeError(f"Cannot create a property of type {type(default).__name__} for '{name}'")
        self._default = self._type(default)
        self._value = self._default

    @property
    def type(self) -> str:
        return {bool: "boolean", int: "number", float: "number", str: "string"}[self._type]

    def _get(self) -> Any:
        return self._value

    def _convert(self, value: Any) -> Any:
        t = self._type
        if t is bool:
            if isinstance(value, (bool, np.bool_, int, np.integer)):
                return bool(value)
        elif t is int:
            if isinstance(value, (bool, int, np.integer)):
                return int(value)
        elif t is float:
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                return float(value)
        elif t is str:
            if isinstance(value, str):
                return value
        raise ValueError(f"Attempt to assign to property ({self._name}) of incorrect type")

    def _set(self, value: Any) -> None:
        self._value = self._convert(value)

    def _set_str(self, text: str) -> None:
        t = self._type
        try:
            if t is bool:
                low = text.strip().lower()
                if low not in ("1", "0", "true", "false"):
                    raise ValueError(text)
                self._value = low in ("1", "true")
            elif t is int:
                self._value = int(text.strip()) if text.strip() else self._default
            elif t is float:
                self._value = float(text.strip()) if text.strip() else self._default
            else:
                self._value = text
        except ValueError as exc:
            raise ValueError(
                f'Could not set property {self._name}: cannot convert "{text}" to type {t.__name__}'
            ) from exc

    def _as_str(self) -> str:
        if self._type is bool:
            return "1" if self._value else "0"
        if self._type is float:
            return repr(float(self._value))
        return str(self._value)

    def _is_default(self) -> bool:
        return self._value == self._default


class _ArrayProperty(Property):
    _dtype: Any = np.float64
    _mandatory_validator: type = _ArrayMandatoryValidator

    def __init__(self, name: str, values: Any = None, validator: IValidator | None = None, direction: int = Direction.Input):
        # Overloads: (name, direction) and (name, values, validator=None, direction=Input).
        if isinstance(values, int) and not isinstance(values, bool) and validator is None and direction == Direction.Input:
            direction, values = values, None
        super().__init__(name, direction, validator)
        self._default = self._coerce([] if values is None else values)
        self._value = self._default.copy()

    def _coerce(self, values: Any) -> np.ndarray:
        if isinstance(values, str):
            return self._parse(values)
        arr = np.asarray(values)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"Property {self._name} needs a 1D sequence, got shape {arr.shape}")
        if arr.size and self._dtype is not str:
            if self._dtype is np.int64 and arr.dtype.kind not in "iub":
                raise ValueError(f"Attempt to assign to property ({self._name}) of incorrect type")
            if arr.dtype.kind not in "iubf":
                raise ValueError(f"Attempt to assign to property ({self._name}) of incorrect type")
        if self._dtype is str:
            return np.array([str(v) for v in arr.tolist()], dtype=object)
        return arr.astype(self._dtype)

    def _parse(self, text: str) -> np.ndarray:
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if self._dtype is str:
            return np.array(parts, dtype=object)
        try:
            return np.array([self._dtype(float(p)) if self._dtype is np.int64 else float(p) for p in parts], dtype=self._dtype)
        except ValueError as exc:
            raise ValueError(f'Could not set property {self._name}: cannot convert "{text}"') from exc

    def _get(self) -> Any:
        if self._dtype is str:
            return [str(v) for v in self._value]
        return self._value.copy()

    def _set(self, value: Any) -> None:
        self._value = self._coerce(value)

    def _set_str(self, text: str) -> None:
        self._value = self._parse(text)

    def _as_str(self) -> str:
        return ",".join(str(v) for v in self._value.tolist())

    def _is_default(self) -> bool:
        return len(self._value) == len(self._default) and all(
            a == b for a, b in zip(self._value.tolist(), self._default.tolist())
        )

    def _is_valid(self) -> str:
        if self._validator is None:
            return ""
        return self._validator._check(self._get())


class FloatArrayProperty(_ArrayProperty):
    """Array of float64; ``.value`` is a numpy array."""

    _dtype = np.float64


class IntArrayProperty(_ArrayProperty):
    """Array of integers; ``.value`` is a numpy array."""

    _dtype = np.int64


class StringArrayProperty(_ArrayProperty):
    """Array of strings; ``.value`` is a list of str."""

    _dtype = str


def property_from_default(
    name: str, default: Any, validator: IValidator | None, direction: int
) -> Property:
    """The property type Mantid picks from a Python default value (PropertyWithValueFactory)."""
    if isinstance(default, (list, tuple)):
        if not default:
            raise TypeError(f"Cannot infer the type of property '{name}' from an empty list")
        if all(isinstance(v, bool) for v in default):
            raise TypeError(f"Cannot create an array property of bools for '{name}'")
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in default):
            return IntArrayProperty(name, list(default), validator, direction)
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in default):
            return FloatArrayProperty(name, [float(v) for v in default], validator, direction)
        if all(isinstance(v, str) for v in default):
            return StringArrayProperty(name, list(default), validator, direction)
        raise TypeError(f"Cannot infer an array property type for '{name}' from {default!r}")
    if isinstance(default, dict):
        raise TypeError("the test double does not model PropertyManager (dict) properties")
    if isinstance(default, np.ndarray):
        raise TypeError(f"Cannot create a property of type numpy.ndarray for '{name}'")
    return PropertyWithValue(name, default, validator, direction)
