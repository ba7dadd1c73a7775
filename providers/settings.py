"""What a deployment is, as the config file says it: one backend a request can land on.

The providers own these settings; ``gateway.config.GatewayConfig`` composes them with the
routing policy into the whole file.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from core.literals import Capability, Level, Locality
from core.strict import Strict

ProviderName = Literal["llamacpp", "openai_compatible", "litellm", "vllm", "ollama", "llamacpp_server", "tgi", "lmstudio"]
SELF_HOSTED_PRESETS = ("vllm", "ollama", "llamacpp_server", "tgi", "lmstudio")  # providers/presets.py
ModelKind = Literal["base", "instruct", "embedding"]
Modality = Literal["text", "image", "audio", "video"]
SHA256_REVISION = re.compile(r"^sha256:[0-9a-f]{64}$")


class Timeouts(Strict):
    """Seconds. ``first_byte`` bounds the wait for the response head (or the first stream event);
    ``read`` the gap between two chunks; ``total`` a whole non-streamed answer, so that a backend
    dripping its body a byte at a time cannot hold a request (and its caller) indefinitely."""

    connect: float = Field(default=5.0, gt=0)
    first_byte: float = Field(default=60.0, gt=0)
    read: float = Field(default=600.0, gt=0)  # between two chunks of a response
    total: float = Field(default=900.0, gt=0)  # a whole non-streamed answer


class Pricing(Strict):
    """Either per-token prices (USD per million) or a GPU-hour cost with its throughput."""

    input_per_mtok: Decimal | None = Field(default=None, ge=0)
    output_per_mtok: Decimal | None = Field(default=None, ge=0)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)
    gpu_hour_usd: Decimal | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _gpu_needs_throughput(self) -> Pricing:
        if self.gpu_hour_usd and self.gpu_hour_usd > 0 and self.tokens_per_second is None:
            raise ValueError("gpu_hour_usd > 0 needs tokens_per_second to turn an hour into a token price")
        return self


class DeploymentConfig(Strict):
    """One backend a request can land on."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    provider: ProviderName
    model: str = Field(min_length=1)
    locality: Locality
    base_url: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    context_window: int = Field(default=8192, ge=1)
    capabilities: list[Capability] = Field(default_factory=lambda: list[Capability](["chat", "completions"]))
    # base: a pretrained model that continues text (completions only, never chat or messages);
    # instruct: answers turns; embedding: vectors only
    kind: ModelKind = "instruct"
    quality: int = Field(default=3, ge=1, le=5)
    latency_ms: float | None = Field(default=None, ge=0)  # hint for the "fastest" objective
    # the least sensitivity a request with content no detector can read (images, audio, binary
    # files, undecodable token ids) is treated as on this deployment; confidential keeps it off
    # hosted deployments, public lets it through
    unscannable: Level = "confidential"
    pricing: Pricing = Pricing()
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=1024, ge=1)  # concurrent upstream requests (streams hold one each)
    enabled: bool | None = None  # None: on, except a hosted deployment whose api_key is empty
    # openai_compatible streams: "always" asks the backend for usage whatever the client asked
    # (exact billing; what the client did not ask for is hidden from it), "client" forwards the
    # client's own stream_options (for servers that reject them). Default: always when hosted.
    stream_usage: Literal["always", "client"] | None = None
    # llamacpp only
    n_ctx: int | None = Field(default=None, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    max_queue: int = Field(default=64, ge=1)  # requests waiting for the embedded model
    parallel: int = Field(default=1, ge=1)  # model instances (each has its own worker thread)
    # litellm only: extra keyword arguments passed to litellm.acompletion (e.g. api_version)
    litellm_params: dict[str, Any] = Field(default_factory=dict)
    # Governance (routing/governance.py; `switchyard intake` writes these from a model's own card).
    # license: an SPDX id (apache-2.0) or a named custom licence (llama3.1); approved_for: the
    # uses it is approved for, which projects' `requires` check; revision: the exact weights
    # reviewed, a pinned revision string or `sha256:<hex>` of a llamacpp GGUF file (checked when
    # the config is loaded to serve: gateway/revisions.py); region: where it runs.
    license: str | None = Field(default=None, min_length=1)
    approved_for: list[str] = Field(default_factory=list)
    revision: str | None = Field(default=None, min_length=1)
    region: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    modalities: list[Modality] | None = None  # what it reads and writes; None: not declared

    @field_validator("approved_for", mode="before")
    @classmethod
    def _uses(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            for use in value:
                if not isinstance(use, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", use):
                    raise ValueError(f"{use!r} is not a use name (letters, digits, '_', '.', '-'; e.g. commercial)")
            return [use.lower() for use in value]
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @model_validator(mode="after")
    def _provider_fields(self) -> DeploymentConfig:
        if self.provider == "openai_compatible" and not self.base_url:
            raise ValueError("base_url: required for provider openai_compatible")
        if self.provider != "llamacpp" and (self.n_ctx or self.n_threads):
            raise ValueError("n_ctx / n_threads apply only to provider llamacpp")
        if self.revision is not None and self.revision.lower().startswith("sha256:"):
            if not SHA256_REVISION.match(self.revision.lower()):
                raise ValueError("revision: sha256: needs the file's 64 hex digits (sha256:<hex>)")
            if self.provider != "llamacpp":
                raise ValueError(
                    "revision: sha256: pins a GGUF file the gateway loads itself (provider llamacpp); "
                    "for a served model, pin the revision string its server loaded"
                )
        return self

    @property
    def pinned_sha256(self) -> str | None:
        """The hex digest ``revision: sha256:...`` pins, if it does."""
        if self.revision is not None and SHA256_REVISION.match(self.revision.lower()):
            return self.revision.lower().removeprefix("sha256:")
        return None

    @property
    def asks_stream_usage(self) -> bool:
        """Whether streams from this deployment always ask the backend for usage."""
        if self.stream_usage is not None:
            return self.stream_usage == "always"
        return self.locality == "hosted"

    @property
    def is_enabled(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        # A hosted API whose key is configured but empty (``${KEY:-}`` unset) stays off.
        if (
            (self.provider == "litellm" or self.locality == "hosted")
            and self.api_key is not None
            and not self.api_key.get_secret_value()
        ):
            return False
        return True
