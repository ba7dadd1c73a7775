"""The one strict base for configuration models: unknown keys are an error, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Rejects unknown keys (a typo in a config file is an error, never ignored) and is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
