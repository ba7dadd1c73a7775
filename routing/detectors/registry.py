"""The built-in detectors, and the per-config set (built-ins minus ``disable``, re-levelled, plus
admin ones) with its scan cache."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from routing.detectors.base import (
    BOUNDARY,
    EntityDetector,
    FunctionDetector,
    Scan,
    with_level,
)
from routing.detectors.contact import count_emails, count_ipv6
from routing.detectors.credentials import DETECTORS as CREDENTIAL_DETECTORS
from routing.detectors.custom import compile_admin_detector
from routing.detectors.financial import count_ibans
from routing.detectors.normalize import normalize, prepare_tables
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
    FunctionDetector("ip_address", CONFIDENTIAL, lambda scan: numeric_counts(scan)["ip_address"] + count_ipv6(scan)),
)
BUILTIN_LEVELS: dict[str, Sensitivity] = {d.name: d.level for d in BUILTIN_DETECTORS}

CHUNK_CHARS = 2048
"""Texts are scanned (and cached) in chunks of about this many characters: small texts share a
chunk, so a request with a hundred short strings costs one scan, not a hundred; a chat's earlier
turns form the same chunks on every turn, so only the chunk holding the new turn is scanned."""

CACHE_ENTRIES = 4096
"""Chunks remembered per detector set. An entry is a key and a few counts (no text is kept), so
the cache holds well under a megabyte, whatever the traffic."""


def chunks(texts: Sequence[str], size: int = CHUNK_CHARS) -> Iterator[list[str]]:
    """``texts`` in order, grouped into runs of about ``size`` characters; a longer text is a run
    of its own. The grouping of a prefix of ``texts`` never depends on what follows it."""
    current: list[str] = []
    length = 0
    for text in texts:
        if len(text) >= size:
            if current:
                yield current
                current, length = [], 0
            yield [text]
            continue
        current.append(text)
        length += len(text)
        if length >= size:
            yield current
            current, length = [], 0
    if current:
        yield current


class DetectorSet:
    """The detectors of one config, compiled once; :meth:`scan_texts` runs them all over the texts
    of one request, normalised, and remembers each chunk's counts by a hash of its raw text.

    The key is Python's string hash (SipHash with a per-process random key) and the length: a
    collision between two different chunks is a 2**-64 event that an outsider cannot steer, and no
    text is kept in memory after its request.
    """

    __slots__ = ("_cache", "cache_entries", "chars_scanned", "chunks_scanned", "detectors")

    def __init__(self, detectors: tuple[EntityDetector, ...], cache_entries: int = CACHE_ENTRIES) -> None:
        self.detectors = detectors
        self.cache_entries = cache_entries
        self._cache: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
        self.chunks_scanned = 0  # cache misses, and the characters they held: what scanning cost
        self.chars_scanned = 0

    def _counts(self, normalised: str) -> tuple[tuple[int, int], ...]:
        """``(detector index, count)`` for every detector that fires on ``normalised`` text."""
        scan = Scan(normalised)
        found = []
        for index, detector in enumerate(self.detectors):
            count = detector.count(scan)
            if count:
                found.append((index, count))
        return tuple(found)

    def _chunk_counts(self, chunk: list[str]) -> tuple[tuple[int, int], ...]:
        raw = chunk[0] if len(chunk) == 1 else BOUNDARY.join(chunk)
        key = (hash(raw), len(raw))
        cache = self._cache
        found = cache.pop(key, None)
        if found is None:
            found = self._counts(BOUNDARY.join(map(normalize, chunk)))
            self.chunks_scanned += 1
            self.chars_scanned += len(raw)
            if len(cache) >= self.cache_entries:
                del cache[next(iter(cache))]  # the least recently used: hits are re-inserted at the end
        cache[key] = found
        return found

    def scan_texts(self, texts: Sequence[str]) -> tuple[DetectorHit, ...]:
        """Every detector over every text (no match spans two texts); hits in detector order."""
        if not texts:
            return ()
        totals: dict[int, int] = {}
        for chunk in chunks(texts):
            for index, count in self._chunk_counts(chunk):
                totals[index] = totals.get(index, 0) + count
        detectors = self.detectors
        return tuple(DetectorHit(detectors[i].name, totals[i], detectors[i].level) for i in sorted(totals))

    def scan(self, text: str) -> tuple[DetectorHit, ...]:
        """:meth:`scan_texts` of one text."""
        return self.scan_texts((text,)) if text else ()

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cached_chunks(self) -> int:
        return len(self._cache)

    @property
    def names(self) -> tuple[str, ...]:
        """The active detectors, built-in and admin-defined."""
        return tuple(d.name for d in self.detectors)


def compile_detectors(policy: SensitivityPolicy, builtins: Sequence[EntityDetector] = BUILTIN_DETECTORS) -> DetectorSet:
    """Built-ins minus ``policy.disable``, with ``policy.levels`` applied, then the admin's own.

    Also builds the normaliser's Unicode tables (once per process), so that the first request with
    non-ASCII text does not pay for them."""
    prepare_tables()
    disabled = set(policy.disable)
    detectors: list[EntityDetector] = []
    for detector in builtins:
        if detector.name in disabled:
            continue
        override = policy.levels.get(detector.name)
        detectors.append(with_level(detector, Sensitivity.parse(override)) if override else detector)
    detectors.extend(compile_admin_detector(spec) for spec in policy.detectors)
    return DetectorSet(tuple(detectors))
