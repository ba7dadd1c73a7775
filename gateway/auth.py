"""Who is calling: the bearer token -> a :class:`Caller` (project, key, limits, tags)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

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


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # Same wording as OpenAI, so SDK users recognise it.
        raise AuthenticationFailed(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    return token.strip()


def is_master_key(token: str, master_key: str) -> bool:
    return hmac.compare_digest(token.encode(), master_key.encode())


def invalid_key(token: str) -> AuthenticationFailed:
    shown = f"{token[:6]}...{token[-4:]}" if len(token) > 12 else "***"
    return AuthenticationFailed(f"Incorrect API key provided: {shown}.")
