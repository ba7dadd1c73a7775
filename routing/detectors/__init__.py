"""Sensitivity detectors: validated built-ins (credentials, cards, IBANs, SSNs, contact data) and
admin-defined ones, compiled once per config into a :class:`DetectorSet`."""

from routing.detectors.base import EntityDetector, Scan
from routing.detectors.registry import (
    BUILTIN_DETECTORS,
    BUILTIN_LEVELS,
    DetectorSet,
    compile_detectors,
)

__all__ = ["BUILTIN_DETECTORS", "BUILTIN_LEVELS", "DetectorSet", "EntityDetector", "Scan", "compile_detectors"]
