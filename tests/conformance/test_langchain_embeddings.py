"""LangChain's OpenAIEmbeddings with its defaults (inputs sent as cl100k token ids) against
`switchyard serve` as a real process with the embedded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import MASTER_KEY, GatewayProcess, write_config

pytestmark = pytest.mark.slow

EMBEDDED = {
    "name": "local-smollm2",
    "provider": "llamacpp",
    "model": "smollm2-135m-instruct",
    "locality": "self_hosted",
    "capabilities": ["chat", "completions", "embeddings"],
    "quality": 1,
    "pricing": {"gpu_hour_usd": 0},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("langchain")
    config = write_config(
        workdir,
        {
            "database_url": f"sqlite:///{workdir / 'ledger.db'}",
            "deployments": [EMBEDDED],
            "routes": [{"name": "auto", "objective": "cheapest", "candidates": ["local-smollm2"]}],
            "projects": [{"name": "default", "budget": {"usd": 100, "period": "monthly"}}],
        },
    )
    process = GatewayProcess(config, cwd=workdir)
    process.start(timeout=120)
    yield process
    process.stop()


def test_langchain_embeddings_with_defaults(served: GatewayProcess) -> None:
    from langchain_openai import OpenAIEmbeddings

    from providers.tokens import _encoding

    _encoding("cl100k_base")  # points tiktoken at the bundled files (no network), for LangChain too
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent."]
    embeddings = OpenAIEmbeddings(model="local-smollm2", base_url=served.base_url + "/v1", api_key=MASTER_KEY, max_retries=0)
    assert embeddings.check_embedding_ctx_length  # the default: inputs go as cl100k token ids
    vectors = embeddings.embed_documents(texts)
    assert len(vectors) == 2 and len(vectors[0]) > 100 and vectors[0] != vectors[1]
    query = embeddings.embed_query(texts[0])
    direct = httpx.post(
        served.base_url + "/v1/embeddings",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "local-smollm2", "input": texts[0]},
        timeout=60,
    ).json()["data"][0]["embedding"]
    assert query == pytest.approx(direct, rel=1e-5, abs=1e-6)  # the ids were decoded to the same text
