"""Pinned model files: a llamacpp deployment's ``revision: sha256:<hex>`` is checked before it serves.

The check runs when a config is loaded to serve -- at start (``switchyard serve``, the app's
startup), on every hot reload, and in ``switchyard check`` -- never per request. A mismatch is a
:class:`~gateway.config.ConfigError` naming the key path, the file and both digests::

    config.yaml: deployments[0].revision: sha256 of /models/m.gguf is 3f2a..., pinned 9c1b...

so a start fails with it and a reload is refused with it while the running config stays.

Files are hashed in 1 MiB chunks (a model of several GB never sits in memory) and the digest is
remembered by the file's identity (path, size, modification time, inode): a reload that does not
touch the file does not read it again. Reload hashes in a worker thread, off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig

CHUNK = 1 << 20

_digests: dict[tuple[str, int, int, int], str] = {}
_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of ``path``, read in chunks; remembered while the file is unchanged."""
    stat = path.stat()
    identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _lock:
        known = _digests.get(identity)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _lock:
        _digests[identity] = hexdigest
    return hexdigest


def revision_problems(config: GatewayConfig) -> list[str]:
    """Every enabled llamacpp deployment whose file does not match its pinned sha256, by key path."""
    problems = []
    for i, dep in enumerate(config.deployments):
        pinned = dep.pinned_sha256
        if pinned is None or not dep.is_enabled:
            continue
        from providers.llamacpp import ProviderSetupError, resolve_model_path  # only when a file is pinned

        key = f"deployments[{i}].revision"
        try:
            path = resolve_model_path(dep.model)
            actual = file_sha256(path)
        except ProviderSetupError as exc:
            problems.append(f"{key}: cannot check the pinned sha256: {exc}")
            continue
        except OSError as exc:
            problems.append(f"{key}: cannot read {dep.model} to check the pinned sha256: {exc.strerror or exc}")
            continue
        if actual != pinned:
            problems.append(f"{key}: sha256 of {path} is {actual}, pinned {pinned}")
    return problems


def verify_revisions(config: GatewayConfig, source: str | os.PathLike[str] = "<config>") -> None:
    """Raise :class:`ConfigError` (file, key path, both digests) when a pinned file does not match."""
    problems = revision_problems(config)
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))
