"""Builds the adapter for a deployment from its config (adapters are imported lazily)."""

from __future__ import annotations

from providers.base import Provider
from providers.parameters import ParameterPolicy
from providers.settings import DeploymentConfig


def build_provider(config: DeploymentConfig) -> Provider:
    """Return the adapter for ``config.provider``; heavy backends are imported only when used."""
    if config.provider == "openai_compatible":
        from providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(config)
    if config.provider in ("vllm", "ollama", "llamacpp_server", "tgi", "lmstudio"):
        from providers.self_hosted import SelfHostedProvider

        return SelfHostedProvider(config)
    if config.provider == "llamacpp":
        from providers.llamacpp import LlamaCppProvider

        return LlamaCppProvider(config)
    if config.provider == "litellm":
        from providers.hosted_litellm import LiteLLMProvider

        return LiteLLMProvider(config)
    raise ValueError(f"unknown provider '{config.provider}'")


def parameter_policy(provider: str) -> ParameterPolicy:
    """What ``provider``'s adapter does with each request parameter (providers/parameters.py)."""
    if provider == "llamacpp":
        from providers.llamacpp_requests import PARAMETERS as EMBEDDED

        return EMBEDDED
    if provider == "litellm":
        from providers.hosted_litellm import PARAMETERS as HOSTED

        return HOSTED
    from providers.openai_compatible import PARAMETERS as HTTP  # and the self-hosted presets over it

    return HTTP
