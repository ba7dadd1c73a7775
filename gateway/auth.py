"""Who is calling: the API key -> a :class:`Caller` (project, key, limits, tags)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import AuthenticationFailed

if TYPE_CHECKING:
    from gateway.keys import KeyInfo


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal of one request."""

    project: str
    key_id: str | None = None  # None for the master key
    key_name: str | None = None
    is_master: bool = False
    tags: frozenset[str] = frozenset()
    allowed_models: tuple[str, ...] = ()  # empty: every model
    key_info: KeyInfo | None = field(default=None, compare=False)
    role: str = "app"  # app | finance | admin (gateway/roles.py); the master key is admin
    scope: tuple[str, ...] = ()  # projects a finance key may see (empty: every project)

    def sees(self, project: str) -> bool:
        """Whether reports may show this project to the caller."""
        return not self.scope or project in self.scope


def api_key_from(headers: Mapping[str, str]) -> str:
    """The key from ``Authorization: Bearer ...`` (OpenAI SDKs) or ``x-api-key`` (Anthropic SDKs)."""
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    # Same wording as OpenAI, so SDK users recognise it.
    raise AuthenticationFailed(
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )


def is_master_key(token: str, master_key: str) -> bool:
    return hmac.compare_digest(token.encode(), master_key.encode())


def invalid_key(token: str) -> AuthenticationFailed:
    shown = f"{token[:6]}...{token[-4:]}" if len(token) > 12 else "***"
    return AuthenticationFailed(f"Incorrect API key provided: {shown}.")
