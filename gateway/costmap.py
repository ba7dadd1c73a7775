"""litellm's bundled model price map, read as JSON without importing litellm (which costs ~4 s).

The map ships inside the litellm wheel as ``model_prices_and_context_window_backup.json``; it is
never downloaded (the machine may have no internet).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def load_cost_map() -> dict[str, dict[str, Any]]:
    """The whole map (model name -> entry); empty when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    data.pop("sample_spec", None)
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def cost_entry(model: str) -> dict[str, Any] | None:
    """The entry for a litellm model string such as ``openai/gpt-4o-mini`` or ``gpt-4o-mini``."""
    cost_map = load_cost_map()
    if model in cost_map:
        return cost_map[model]
    _, _, bare = model.partition("/")
    return cost_map.get(bare) if bare else None
