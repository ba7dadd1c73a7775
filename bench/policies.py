"""Configs for policy simulation (bench.simulation and its tests): a realistic running policy and the
candidates a finance team would try against it."""

from __future__ import annotations

import copy
from typing import Any

import yaml

HOSTED_PRICES = {
    "gpt-4o-mini": {"input_per_mtok": 0.15, "cached_input_per_mtok": 0.075, "output_per_mtok": 0.6},
    "claude-sonnet": {"input_per_mtok": 3, "cached_input_per_mtok": 0.3, "output_per_mtok": 15},
}


def running_config(database_url: str, spool_dir: str = "./spool") -> dict[str, Any]:
    """Two self-hosted and two hosted deployments behind ``auto``, private data kept home, code to the coder."""
    backend = "http://127.0.0.1:9/v1"
    return {
        "database_url": database_url,
        "ledger": {"spool_dir": spool_dir},
        "deployments": [
            {
                "name": "llama-3.1-8b",
                "provider": "openai_compatible",
                "base_url": backend,
                "model": "llama",
                "locality": "self_hosted",
                "context_window": 32768,
                "capabilities": ["chat", "completions", "embeddings", "tools", "json_schema"],
                "pricing": {"gpu_hour_usd": 2.5, "tokens_per_second": 2500},
            },
            {
                "name": "qwen-coder-32b",
                "provider": "openai_compatible",
                "base_url": backend,
                "model": "qwen",
                "locality": "self_hosted",
                "context_window": 32768,
                "capabilities": ["chat", "completions", "tools", "json_schema"],
                "quality": 4,
                "pricing": {"gpu_hour_usd": 4.0, "tokens_per_second": 1500},
            },
            {
                "name": "gpt-4o-mini",
                "provider": "openai_compatible",
                "base_url": backend,
                "model": "gpt-4o-mini",
                "locality": "hosted",
                "context_window": 128000,
                "capabilities": ["chat", "tools", "vision", "json_schema"],
                "quality": 4,
                "unscannable": "internal",  # images may go to this one
                "pricing": HOSTED_PRICES["gpt-4o-mini"],
            },
            {
                "name": "claude-sonnet",
                "provider": "openai_compatible",
                "base_url": backend,
                "model": "claude-sonnet",
                "locality": "hosted",
                "context_window": 200000,
                "capabilities": ["chat", "tools", "vision"],
                "quality": 5,
                "pricing": HOSTED_PRICES["claude-sonnet"],
            },
        ],
        "routes": [
            {
                "name": "auto",
                "objective": "cheapest",
                "candidates": ["llama-3.1-8b", "qwen-coder-32b", "gpt-4o-mini", "claude-sonnet"],
                "rules": [
                    {
                        "name": "keep-private-data-home",
                        "when": {"sensitivity": ["confidential", "restricted"]},
                        "allow": {"locality": ["self_hosted"]},
                    },
                    {"name": "code-to-coder", "when": {"task": ["code"]}, "prefer": ["qwen-coder-32b"]},
                ],
            }
        ],
        "projects": [],
        "reporting": {"reference_model": "gpt-4o"},
    }


def as_candidate(config: dict[str, Any]) -> str:
    """A config as the YAML a finance user would upload: the hosted deployments through litellm
    with API keys from the environment, which the simulation never needs."""
    data = copy.deepcopy(config)
    for dep in data["deployments"]:
        if dep["locality"] == "hosted":
            dep.pop("base_url")
            dep.update(provider="litellm", model=f"openai/{dep['model']}", api_key="${OPENAI_API_KEY}")
    return yaml.safe_dump(data, sort_keys=False)


def simple_tasks_home(config: dict[str, Any]) -> dict[str, Any]:
    """The candidate that moves summaries, extraction, classification and translation to self-hosted."""
    data = copy.deepcopy(config)
    data["routes"][0]["rules"].insert(
        1,
        {
            "name": "simple-tasks-home",
            "when": {"task": ["summarize", "extract", "classify", "translate"]},
            "allow": {"locality": ["self_hosted"]},
        },
    )
    return data


def without(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The candidate with deployment ``name`` removed from the catalogue and the route."""
    data = copy.deepcopy(config)
    data["deployments"] = [d for d in data["deployments"] if d["name"] != name]
    for route in data["routes"]:
        route["candidates"] = [c for c in route["candidates"] if c != name]
        for rule in route["rules"]:
            rule["prefer"] = [p for p in rule.get("prefer", []) if p != name]
    return data
