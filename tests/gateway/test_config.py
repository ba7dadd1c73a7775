"""Config validation: strict keys, env interpolation, cross-references, and `switchyard check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, interpolate_env, load_config, parse_config
from tests.helpers import ROOT

GOOD = """
deployments:
  - {name: a, provider: openai_compatible, base_url: "http://127.0.0.1:1/v1", model: m, locality: self_hosted}
routes:
  - {name: auto, candidates: [a]}
"""


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml", environ={})
    assert [r.name for r in config.routes] == ["auto"]
    enabled = [d.name for d in config.enabled_deployments]
    assert enabled == ["local-smollm2"]  # hosted ones wait for their API keys, vLLM for a server


def test_hosted_deployment_is_enabled_once_its_key_is_set() -> None:
    config = load_config(ROOT / "config.example.yaml", environ={"OPENAI_API_KEY": "sk-x"})
    assert "gpt-4o-mini" in [d.name for d in config.enabled_deployments]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("routes:", "colour: blue\nroutes:"), "colour: unknown key"),
        (GOOD.replace("locality: self_hosted}", "locality: self_hosted, extra: 1}"), "deployments[0].extra: unknown key"),
        (GOOD.replace("candidates: [a]", "candidates: [a, gpt-5]"), "routes[0].candidates[1]: unknown deployment 'gpt-5'"),
        (GOOD.replace("locality: self_hosted", "locality: moon"), "deployments[0].locality"),
        (GOOD + "server: {port: many}\n", "server.port"),
        (
            GOOD.replace('provider: openai_compatible, base_url: "http://127.0.0.1:1/v1",', "provider: openai_compatible,"),
            "base_url",
        ),
        (GOOD + "projects: [{name: p, budget: {usd: -1}}]\n", "projects[0].budget.usd"),
        (
            GOOD.replace("{name: auto, candidates: [a]}", "{name: auto, candidates: [a], objective: random}"),
            "routes[0].objective",
        ),
        ("deployments: [", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_key_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.yaml", environ={})
    assert "cfg.yaml" in str(info.value)
    assert expected in str(info.value)


def test_duplicate_names_are_refused() -> None:
    text = GOOD.replace(
        "routes:", "  - {name: a, provider: openai_compatible, base_url: 'http://x/v1', model: m, locality: hosted}\nroutes:"
    )
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.name: duplicate deployment name 'a'"):
        parse_config(text, environ={})


def test_env_interpolation() -> None:
    env = {"HOST": "10.0.0.1", "EMPTY": ""}
    assert interpolate_env("${HOST}:${PORT:-4000}", env) == "10.0.0.1:4000"
    assert interpolate_env("[${EMPTY:-fallback}]", env) == "[fallback]"
    assert interpolate_env("[${EMPTY}]", env) == "[]"
    with pytest.raises(ConfigError, match="MISSING is not set"):
        interpolate_env("key: ${MISSING}", env)


def test_env_is_expanded_in_values_only() -> None:
    text = "# comment with ${NOT_SET}\n" + GOOD.replace("model: m", "model: '${MODEL:-m}'") + "server: {port: '${PORT}'}\n"
    config = parse_config(text, environ={"PORT": "4100", "MODEL": "x: [injected]"})
    assert config.server.port == 4100
    assert config.deployments[0].model == "x: [injected]"  # a value, never YAML structure
    with pytest.raises(ConfigError, match=r"server\.port: environment variable PORT is not set"):
        parse_config(text, source="c.yaml", environ={})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_check_passes_on_the_example_and_fails_with_key_paths(tmp_path: Path) -> None:
    ok = _cli("check", "config.example.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("candidates: [a]", "candidates: [nope]"))
    failed = _cli("check", str(bad))
    assert failed.returncode != 0
    assert "routes[0].candidates[0]: unknown deployment 'nope'" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_cli_version() -> None:
    result = _cli("version")
    assert result.returncode == 0 and result.stdout.startswith("switchyard ")


def test_serve_refuses_several_workers_without_shared_admission(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(GOOD)
    result = _cli("serve", "--config", str(config), "--workers", "2", "--port", "0")
    assert result.returncode == 2
    assert "needs redis_url" in result.stderr
