"""The built-in detectors, and the per-config set (built-ins minus ``disable``, re-levelled, plus admin ones)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.detectors.base import EntityDetector, FunctionDetector, Scan, with_level
from routing.detectors.contact import count_emails, count_ipv6
from routing.detectors.credentials import DETECTORS as CREDENTIAL_DETECTORS
from routing.detectors.custom import compile_admin_detector
from routing.detectors.financial import count_ibans
from routing.detectors.numeric import numeric_counts
from routing.detectors.passwords import DETECTORS as PASSWORD_DETECTORS
from routing.spec import SensitivityPolicy
from routing.types import DetectorHit, Sensitivity

CONFIDENTIAL, RESTRICTED = Sensitivity.CONFIDENTIAL, Sensitivity.RESTRICTED


def _numeric(name: str, level: Sensitivity) -> FunctionDetector:
    return FunctionDetector(name, level, lambda scan: numeric_counts(scan)[name])


BUILTIN_DETECTORS: tuple[EntityDetector, ...] = (
    *CREDENTIAL_DETECTORS,
    *PASSWORD_DETECTORS,
    _numeric("credit_card", RESTRICTED),
    FunctionDetector("iban", RESTRICTED, count_ibans),
    _numeric("us_ssn", RESTRICTED),
    FunctionDetector("email", CONFIDENTIAL, count_emails),
    _numeric("phone", CONFIDENTIAL),
    FunctionDetector(
        "ip_address", CONFIDENTIAL, lambda scan: numeric_counts(scan)["ip_address"] + count_ipv6(scan)
    ),
)
BUILTIN_LEVELS: dict[str, Sensitivity] = {d.name: d.level for d in BUILTIN_DETECTORS}


@dataclass(frozen=True, slots=True)
class DetectorSet:
    """The detectors of one config, compiled once; ``scan`` runs them all over one text."""

    detectors: tuple[EntityDetector, ...]

    def scan(self, text: str) -> tuple[DetectorHit, ...]:
        if not text:
            return ()
        scan = Scan(text)
        hits = []
        for detector in self.detectors:
            count = detector.count(scan)
            if count:
                hits.append(DetectorHit(detector.name, count, detector.level))
        return tuple(hits)

    @property
    def names(self) -> tuple[str, ...]:
        """The active detectors, built-in and admin-defined."""
        return tuple(d.name for d in self.detectors)


def compile_detectors(policy: SensitivityPolicy, builtins: Sequence[EntityDetector] = BUILTIN_DETECTORS) -> DetectorSet:
    """Built-ins minus ``policy.disable``, with ``policy.levels`` applied, then the admin's own."""
    disabled = set(policy.disable)
    detectors: list[EntityDetector] = []
    for detector in builtins:
        if detector.name in disabled:
            continue
        override = policy.levels.get(detector.name)
        detectors.append(with_level(detector, Sensitivity.parse(override)) if override else detector)
    detectors.extend(compile_admin_detector(spec) for spec in policy.detectors)
    return DetectorSet(tuple(detectors))
