"""Schemathesis against the gateway's own OpenAPI document, on a real process: whatever a schema
allows (and some of what it does not), zero 5xx. A fixed example budget keeps it bounded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.helpers import AUTH, ROOT, GatewayProcess, fake_deployment, free_port, write_config

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway process in front of the fake upstream (as a process too), with a scratch ledger."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    upstream_port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(upstream_port), "--name", "fuzz"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = write_config(
        workdir,
        {
            "database_url": f"sqlite:///{workdir}/ledger.db",
            "ledger": {"spool_dir": str(workdir / "spool")},
            "deployments": [fake_deployment("d0", f"http://127.0.0.1:{upstream_port}/v1")],
            "routes": [{"name": "auto", "candidates": ["d0"]}],
        },
    )
    process = GatewayProcess(config, cwd=workdir).start()
    try:
        yield process
    finally:
        process.stop()
        fake.terminate()
        fake.wait(10)


def _cases(gateway: GatewayProcess) -> list[schemathesis.Case]:
    """EXAMPLES_PER_OPERATION cases for every operation of the gateway's OpenAPI document."""
    api = schemathesis.openapi.from_url(gateway.base_url + "/openapi.json", headers=AUTH)
    drawn: list[schemathesis.Case] = []
    for result in api.get_all_operations():
        operation = result.ok()
        examples: list[schemathesis.Case] = []

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(operation.as_strategy())
        def collect(case: schemathesis.Case) -> None:
            examples.append(case)  # noqa: B023 - collect() runs at once, inside this iteration

        collect()
        drawn += examples
    return drawn


def test_no_input_the_schema_describes_causes_a_server_error(gateway: GatewayProcess) -> None:
    cases = _cases(gateway)
    operations = {(c.method, c.path) for c in cases}
    assert ("POST", "/v1/chat/completions") in operations and ("GET", "/admin/usage") in operations
    statuses: set[int] = set()
    for case in cases:
        response = case.call(base_url=gateway.base_url, headers=AUTH, timeout=30)
        statuses.add(response.status_code)
        assert response.status_code < 500 or response.status_code in (502, 503, 504), (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )
        content_type = str(response.headers.get("content-type", ""))
        if response.status_code >= 400 and "application/json" in content_type:
            error = response.json().get("error")
            # Anthropic's Messages routes answer in Anthropic's error shape, every other route in OpenAI's
            shape = {"message", "type"} if case.path.startswith("/v1/messages") else {"message", "type", "param", "code"}
            assert isinstance(error, dict) and shape <= set(error), response.text[:500]
    assert 200 in statuses and 400 in statuses  # both sides were reached
