"""Model bundles: one ``*.exp2sim.h5`` HDF5 file per trained model (see docs/bundle-format.md).

Imports only numpy and h5py; torch is imported by :meth:`Bundle.build_torch_model` alone.
"""

from .defaults import BUNDLE_DIR_ENV, default_bundle_dir, default_bundle_name, default_bundle_path
from .format import Bundle, array_sha256, load_bundle, write_bundle
from .manifest import (
    KINDS,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    RMS_NORMALISATION,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    TASKS,
    make_manifest,
)
from .registry import get_builder, register_architecture, registered_architectures

__all__ = [
    "BUNDLE_DIR_ENV",
    "Bundle",
    "KINDS",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "RMS_NORMALISATION",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "TASKS",
    "array_sha256",
    "default_bundle_dir",
    "default_bundle_name",
    "default_bundle_path",
    "get_builder",
    "load_bundle",
    "make_manifest",
    "register_architecture",
    "registered_architectures",
    "write_bundle",
]
