"""``switchyard intake PATH``: licence-first intake of a model, as a ready deployment block.

It reads what the model itself declares -- never what it might be -- and prints a YAML
``deployments:`` entry to paste into the config:

* a **GGUF file**: its metadata through the ``gguf`` package (``general.license``,
  ``general.name``, ``general.architecture``, ``<arch>.context_length``, the quantisation from
  ``general.file_type``, a chat template), and the file's ``revision: sha256:...``, which the
  gateway checks before it serves the file (gateway/revisions.py);
* a **Hugging Face snapshot folder**: the model card's YAML front matter in ``README.md``
  (``license``, and ``license_name`` when the licence is ``other``; ``pipeline_tag``) and
  ``config.json`` (``max_position_embeddings``, ``architectures``); the revision is the
  snapshot's folder name when it is a commit hash (``.../snapshots/<sha>/``).

A missing licence is **flagged, never guessed**: the block says ``license: null`` under a
``# LICENCE NOT DECLARED`` comment, a warning goes to stderr, and the exit code is 3. Exit codes:
0 the block is complete; 3 the block is printed but the licence is missing (read the model's terms
before approving it); 1 the path cannot be read as a model. ``approved_for`` is always printed
empty: approving a use is a person's decision, made after reading the licence.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXIT_OK = 0
EXIT_UNREADABLE = 1
EXIT_NO_LICENCE = 3

_EMBEDDING_ARCHS = {"bert", "nomic-bert", "jina-bert-v2", "t5encoder"}
_PIPELINE_MODALITIES = {
    "image-text-to-text": ["text", "image"],
    "visual-question-answering": ["text", "image"],
    "audio-text-to-text": ["text", "audio"],
    "automatic-speech-recognition": ["audio", "text"],
}


class IntakeError(Exception):
    """The path is not a model this command can read."""


@dataclass
class Intake:
    """What a model file or folder declares, and the deployment block made of it."""

    source: Path
    deployment: dict[str, Any]
    facts: list[str] = field(default_factory=list)  # shown as comments above the block
    warnings: list[str] = field(default_factory=list)

    @property
    def licence_missing(self) -> bool:
        return self.deployment.get("license") is None

    def block(self) -> str:
        """The YAML list item to paste under ``deployments:``, with its facts as comments."""
        lines = [f"# switchyard intake: {self.source}"]
        lines += [f"# {fact}" for fact in self.facts]
        if self.licence_missing:
            lines.append("# LICENCE NOT DECLARED: the model states no licence; find its terms before approving any use")
        lines.append("# approved_for is yours to fill in once the licence is read (e.g. [internal, commercial])")
        body = yaml.safe_dump([self.deployment], sort_keys=False, default_flow_style=None, width=120)
        if self.licence_missing:
            body = body.replace(
                "\n  license: null\n", "\n  license: null  # FLAGGED: not declared by the model, never guessed\n", 1
            )
        return "\n".join(lines) + "\n" + body


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "model"


def _licence(value: Any, name: Any = None) -> str | None:
    """A card's licence as declared: ``other`` with a ``license_name`` is that name."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value.strip():
        return None
    declared: str = value.strip()
    if declared.lower() == "other" and isinstance(name, str) and name.strip():
        return name.strip()
    return declared


# ---- GGUF


def _field(reader: Any, key: str) -> Any:
    found = reader.fields.get(key)
    if found is None:
        return None
    try:
        return found.contents()
    except Exception:  # noqa: BLE001 - a malformed field reads as absent
        return None


def _quantisation(file_type: Any) -> str | None:
    if not isinstance(file_type, int):
        return None
    import gguf

    try:
        return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


def intake_gguf(path: Path) -> Intake:
    """Read a GGUF file's own metadata (``gguf`` package) and hash it."""
    import gguf

    from gateway.revisions import file_sha256

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a GGUF we can read"
        raise IntakeError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None
    arch = _field(reader, "general.architecture")
    name = _field(reader, "general.name")
    licence = _licence(_field(reader, "general.license"))
    context = _field(reader, f"{arch}.context_length") if arch else None
    quant = _quantisation(_field(reader, "general.file_type"))
    chat = _field(reader, "tokenizer.chat_template") is not None
    embedding = arch in _EMBEDDING_ARCHS or _field(reader, f"{arch}.pooling_type") is not None
    deployment: dict[str, Any] = {
        "name": _slug(path.stem),
        "provider": "llamacpp",
        "model": str(path.resolve()),
        "locality": "self_hosted",
        "license": licence,
        "approved_for": [],
        "revision": f"sha256:{file_sha256(path)}",
    }
    if isinstance(context, int) and context > 0:
        deployment["context_window"] = context
    if embedding:
        deployment |= {"kind": "embedding", "capabilities": ["embeddings"], "modalities": ["text"]}
    elif chat:
        deployment |= {"kind": "instruct", "capabilities": ["chat", "completions"], "modalities": ["text"]}
    else:
        deployment |= {"kind": "base", "capabilities": ["completions"], "modalities": ["text"]}
    facts = [
        f"general.name: {name or '(not declared)'}",
        f"architecture: {arch or '(not declared)'}; quantisation: {quant or '(not declared)'}; "
        f"context length: {context or '(not declared)'}",
        f"chat template: {'yes' if chat else 'no'}; size: {path.stat().st_size / 1e6:.1f} MB",
    ]
    intake = Intake(path, deployment, facts)
    if not isinstance(context, int):
        intake.warnings.append(f"{path}: no {arch}.context_length in the metadata; context_window left at the default")
    return intake


# ---- Hugging Face snapshot folder


def _front_matter(readme: Path) -> dict[str, Any]:
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return {}
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _snapshot_name(folder: Path, revision: str | None) -> str:
    """``.../models--org--name/snapshots/<sha>`` is ``org-name``; any other folder its own name."""
    repo = folder.parent.parent.name if revision is not None else ""
    if repo.startswith("models--"):
        return _slug(repo.removeprefix("models--").replace("--", "-"))
    return _slug(folder.name)


def intake_snapshot(folder: Path) -> Intake:
    """Read a local Hugging Face snapshot: the model card's front matter and ``config.json``."""
    card = _front_matter(folder / "README.md")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError:
        config = None
    except ValueError as exc:
        raise IntakeError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) and not card:
        raise IntakeError(f"{folder}: neither a model card (README.md front matter) nor a config.json")
    config = config if isinstance(config, dict) else {}
    licence = _licence(card.get("license"), card.get("license_name"))
    listed = config.get("architectures")
    architectures: list[Any] = listed if isinstance(listed, list) else []
    context = config.get("max_position_embeddings")
    revision = folder.resolve().name if re.fullmatch(r"[0-9a-f]{40}", folder.resolve().name) else None
    deployment: dict[str, Any] = {
        "name": _snapshot_name(folder.resolve(), revision),
        "provider": "vllm",
        "model": str(folder.resolve()),
        "locality": "self_hosted",
        "license": licence,
        "approved_for": [],
        "revision": revision,
    }
    if isinstance(context, int) and context > 0:
        deployment["context_window"] = context
    pipeline = card.get("pipeline_tag")
    deployment["modalities"] = _PIPELINE_MODALITIES.get(pipeline, ["text"]) if isinstance(pipeline, str) else ["text"]
    link = card.get("license_link")
    facts = [
        f"model card: license {card.get('license') or '(not declared)'}"
        + (f", license_name {card['license_name']}" if card.get("license_name") else "")
        + (f", license_link {link}" if link else ""),
        f"architectures: {', '.join(map(str, architectures)) or '(not declared)'}; model_type: "
        f"{config.get('model_type') or '(not declared)'}; max_position_embeddings: {context or '(not declared)'}",
        "vLLM serves the folder under its path as the model name; set base_url if it does not listen on 127.0.0.1:8000",
    ]
    intake = Intake(folder, deployment, facts)
    if revision is None:
        intake.warnings.append(f"{folder}: not a snapshots/<commit> folder; pin the revision you reviewed by hand")
    return intake


def intake(path: Path) -> Intake:
    """A GGUF file or a Hugging Face snapshot folder, read as it declares itself."""
    if path.is_dir():
        return intake_snapshot(path)
    if path.is_file():
        return intake_gguf(path)
    raise IntakeError(f"{path}: no such file or folder")


def cmd_intake(args: Any) -> int:
    """Print the deployment block; warnings (a missing licence first) on stderr. See the module
    docstring for the exit codes."""
    try:
        found = intake(Path(args.path).expanduser())
    except IntakeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNREADABLE
    print(found.block(), end="")
    if found.licence_missing:
        print(
            f"warning: {found.source}: no licence declared; the block says license: null. Find the model's terms "
            "before approving it for any use (exit code 3).",
            file=sys.stderr,
        )
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_NO_LICENCE if found.licence_missing else EXIT_OK


def add_intake_command(sub: Any) -> None:
    """Register ``switchyard intake`` on the CLI's subcommands."""
    parser = sub.add_parser(
        "intake",
        help="read a GGUF file or a Hugging Face snapshot folder and print a deployment block (licence, revision)",
        description="Exit codes: 0 complete; 3 printed, but the model declares no licence; 1 unreadable.",
    )
    parser.add_argument("path", metavar="PATH_OR_GGUF")
    parser.set_defaults(func=cmd_intake)
