"""``python -m bench.task_train``: train the embedded task classifier's head on the training set.

Embeds every request of tests/data/tasks/train.jsonl with the bundled SmolLM2 (the same window
and template the classifier uses at run time, providers/task_embedding.py; kept in
bench/results/task-train-embeddings.npz for the next run with the same file and settings), picks the L2 strength
of a multinomial logistic regression by 5-fold cross-validation on the training set, fits it on
the whole set (numpy only) and writes providers/data/task_head.json. The held-out eval set is
never read here: ``python -m bench.task_eval`` measures the result.

``--heuristic`` prints the heuristic classifier's accuracy and confusion on the training set
instead (the loop its weights in routing/task_words.py were tuned with).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.task_sets import TEXT_TASKS, TRAIN, Item, load, score
from routing.content import extract_content

DEFAULTS = {
    "head_tokens": 64,
    "tail_tokens": 32,
    "system_chars": 200,
    "pooling": "tokens",
    "template": "{system}{user}",
    "system_template": "{system}\n",
}
L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
CACHE = Path(__file__).resolve().parent / "results" / "task-train-embeddings.npz"


def _fingerprint(settings: dict[str, Any], source: Path = TRAIN) -> str:
    import hashlib

    digest = hashlib.sha256(source.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_embeddings(
    items: list[Item], head: Any, settings: dict[str, Any], cache: Path | None, source: Path = TRAIN
) -> tuple[Any, list[float]]:
    """The embeddings of ``source``'s items (and the seconds each took, through the embedder's
    thread), from ``cache`` when it was made from the same file and settings."""
    import numpy as np

    key = _fingerprint(settings, source)
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if str(data["fingerprint"]) == key and len(data["x"]) == len(items):
            return data["x"], [float(s) for s in data["seconds"]]
    x, seconds = embed_items(items, head)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x, seconds=np.asarray(seconds), fingerprint=np.asarray(key))
    return x, seconds


def embed_items(items: list[Item], head: Any) -> tuple[Any, list[float]]:
    """Every item's embedding through a fresh :class:`TaskEmbedder` (and the time each took)."""
    import numpy as np

    from providers.llamacpp import resolve_model_path
    from providers.task_embedding import MODEL, make_embedder

    embedder = make_embedder(resolve_model_path(MODEL), head)
    embedder.start().result()
    vectors, seconds = [], []
    try:
        for item in items:
            content = extract_content(item.endpoint, item.body)  # type: ignore[arg-type]
            started = time.perf_counter()
            future = embedder.submit(content.last_user_text, content.system_text)
            assert future is not None
            vectors.append(future.result())
            seconds.append(time.perf_counter() - started)
    finally:
        embedder.close()
    return np.asarray(vectors, dtype=np.float32), seconds


def fit(x: Any, y: Any, classes: int, l2: float, steps: int = 400, rate: float = 0.5) -> tuple[Any, Any]:
    """Multinomial logistic regression by full-batch gradient descent (the data are a few hundred rows)."""
    import numpy as np

    n, d = x.shape
    w = np.zeros((classes, d), dtype=np.float64)
    b = np.zeros(classes, dtype=np.float64)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = p - onehot
        w -= rate * (grad.T @ x / n + l2 * w)
        b -= rate * grad.mean(axis=0)
    return w, b


def cross_validate(x: Any, y: Any, classes: int, l2: float, folds: int = 5) -> float:
    import numpy as np

    order = np.random.default_rng(16).permutation(len(y))
    correct = 0
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean, scale = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
        w, b = fit((x[train] - mean) / scale, y[train], classes, l2)
        correct += int((((x[test] - mean) / scale) @ w.T + b).argmax(axis=1).__eq__(y[test]).sum())
    return correct / len(y)


def head_shape(settings: dict[str, Any]) -> Any:
    """A head with no weights: what the embedder needs to know (window, pooling, template)."""
    import numpy as np

    from providers.task_embedding import TaskHead

    blank = np.zeros((len(TEXT_TASKS), 1), dtype=np.float32)
    return TaskHead(TEXT_TASKS, blank, blank[:, 0], blank[0], blank[0] + 1, meta={}, **settings)


def head_settings(head: Any) -> dict[str, Any]:
    return {key: getattr(head, key) for key in DEFAULTS}


def train(out: Path, settings: dict[str, Any], cache: Path | None = CACHE) -> dict[str, Any]:
    import numpy as np

    from providers.task_embedding import MODEL, TaskHead

    items = load(TRAIN)
    labels = TEXT_TASKS
    shape = head_shape(settings)
    started = time.perf_counter()
    x, seconds = cached_embeddings(items, shape, settings, cache)
    y = np.array([labels.index(item.label) for item in items])
    cv = {l2: cross_validate(x, y, len(labels), l2) for l2 in L2_GRID}
    best = max(cv, key=lambda l2: (cv[l2], l2))  # ties: the stronger regularisation
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    w, b = fit((x - mean) / scale, y, len(labels), best)
    train_accuracy = float(((((x - mean) / scale) @ w.T + b).argmax(axis=1) == y).mean())
    meta = {
        "model": MODEL,
        "trained_on": str(TRAIN.relative_to(TRAIN.parents[3])),
        "train_items": len(items),
        "l2": best,
        "cv_accuracy": {str(k): round(v, 4) for k, v in cv.items()},
        "train_accuracy": round(train_accuracy, 4),
        "command": "python -m bench.task_train",
    }
    TaskHead(labels, w, b, mean, scale, meta=meta, **settings).save(out)
    meta["embed_seconds_total"] = round(time.perf_counter() - started, 1)
    if seconds and not np.isnan(seconds).any():
        meta["embed_ms_median"] = round(float(np.median(seconds)) * 1000, 1)
    return meta


def main(argv: list[str] | None = None) -> int:
    from providers.task_embedding import HEAD_PATH

    parser = argparse.ArgumentParser(prog="python -m bench.task_train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    parser.add_argument("--heuristic", action="store_true", help="score the heuristic on the training set instead")
    parser.add_argument("--no-cache", action="store_true", help=f"embed afresh, ignoring {CACHE.name}")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.heuristic:
        from routing.task import HeuristicTaskClassifier

        result = score(HeuristicTaskClassifier(), load(TRAIN))
        print(f"heuristic on train: {result.accuracy:.3f} ({result.correct}/{result.total})")
        for gold in TEXT_TASKS:
            print(f"  {gold:>9}: {dict(result.confusion.get(gold, {}))}")
        return 0
    settings = {key: getattr(args, key) for key in DEFAULTS}
    meta = train(args.out, settings, None if args.no_cache else CACHE)
    print(f"wrote {args.out}: {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
