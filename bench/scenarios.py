"""The scenarios of one run. Each fills a section of ``Bench.results`` (plain JSON-ready data);
:mod:`bench.report` turns it into markdown. Targets are interleaved round by round so that load
from other processes on the machine falls on every target alike; per-round figures are kept and
the median is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.streams import StreamStats, percentile, run_streams
from bench.targets import Target
from bench.wrk import WrkResult, run_wrk

SYSTEM = "You are a concise assistant for the operations team."
QUESTION = "Summarise in one sentence why a model gateway should add as little latency as possible."
EMBED_INPUT = "Switchyard routes each request by sensitivity, task and cost."


@dataclass
class Plan:
    """Durations and counts for one run (``--quick`` shrinks them)."""

    duration_s: float = 5.0  # one wrk measurement
    warmup_s: float = 2.0
    rounds: int = 2  # interleaved rounds for the headline throughput / latency figures
    stream_count: int = 24
    stream_concurrency: int = 4
    stream_solo_count: int = 20  # short streams one at a time, for TTFT without queueing
    stream_tokens: int = 200
    stream_interval_ms: float = 5.0
    first_token_ms: float = 20.0
    many_streams: int = 500
    many_tokens: int = 50
    many_interval_ms: float = 100.0
    long_requests: int = 200_000
    workers: int = 2  # --workers N scaling run (0: skip)


@dataclass
class Bench:
    wrk: str
    run_dir: Path
    plan: Plan
    targets: list[Target]
    stream_upstream: str  # base URL (for /_config and /_stats)
    results: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    # ------------------------------------------------------------ helpers
    @property
    def core(self) -> list[Target]:
        """The targets for the secondary scenarios: Switchyard's extra variants share the code
        path that embeddings and prompt size exercise, so they are measured in the main ones only."""
        return [t for t in self.targets if not t.name.startswith("switchyard+")]

    def body_file(self, name: str, data: dict[str, Any]) -> Path:
        path = self.run_dir / f"body-{name}.json"
        path.write_text(json.dumps(data, separators=(",", ":")))
        return path

    def chat_body(self, target: Target, content: str = QUESTION) -> Path:
        return self.body_file(
            f"chat-{target.name}-{len(content)}".replace(" ", "_"),
            {
                "model": target.chat_model,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
                "max_tokens": 64,
                "temperature": 0.2,
            },
        )

    def embed_body(self, target: Target) -> Path:
        return self.body_file(f"embed-{target.name}".replace(" ", "_"), {"model": target.embed_model, "input": EMBED_INPUT})

    def wrk_run(self, target: Target, url: str, body: Path, connections: int, duration_s: float | None = None) -> dict[str, Any]:
        cpu0 = target.service.cpu_seconds() if target.service else 0.0
        result: WrkResult = run_wrk(
            self.wrk,
            url,
            body,
            headers=target.headers,
            connections=connections,
            duration_s=duration_s or self.plan.duration_s,
            script_dir=self.run_dir,
        )
        out: dict[str, Any] = {
            **result.as_dict(),
            "p90_ms": result.p90_ms,
            "max_ms": result.max_ms,
            "duration_s": round(result.duration_s, 2),
            "load1": round(os.getloadavg()[0], 2),
        }
        if target.service and result.requests:
            out["cpu_us_per_req"] = round((target.service.cpu_seconds() - cpu0) / result.requests * 1e6, 1)
        return out

    def usable(self, targets: list[Target], kind: str) -> list[Target]:
        """``targets`` without those whose preflight request of ``kind`` (chat, embed, stream) failed."""
        skipped = self.results.get("skipped", {})
        return [t for t in targets if kind not in skipped.get(t.name, {})]

    def preflight(self) -> None:
        """One request of each kind through every target; a target that fails one is left out of the
        scenarios of that kind (with the reason in the report) instead of filling them with errors."""
        skipped: dict[str, dict[str, str]] = self.results.setdefault("skipped", {})
        for target in self.targets:
            for kind, url, body in (
                ("chat", target.chat_url, self.chat_body(target)),
                ("embed", target.embed_url, self.embed_body(target)),
            ):
                req = urllib.request.Request(
                    url, data=body.read_bytes(), method="POST", headers={"content-type": "application/json", **target.headers}
                )
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        resp.read()
                except Exception as exc:
                    detail = exc.read()[:200].decode(errors="replace") if hasattr(exc, "read") else ""
                    skipped.setdefault(target.name, {})[kind] = f"{type(exc).__name__}: {exc} {detail}".strip()[:300]
            stats = asyncio.run(
                run_streams(
                    target.stream_url,
                    model=target.stream_model,
                    headers=target.stream_headers,
                    count=1,
                    concurrency=1,
                    expect_tokens=self.plan.stream_tokens,
                    interval_ms=self.plan.stream_interval_ms,
                )
            )
            if stats.errors or not stats.completed:
                skipped.setdefault(target.name, {})["stream"] = (stats.error_samples or ["no complete stream"])[0][:300]
        for name, kinds in skipped.items():
            for kind, reason in kinds.items():
                self.log(f"  {name}: left out of {kind} scenarios: {reason}")

    def rounds(self, key: str, targets: list[Target], run: Callable[[Target], dict[str, Any]], rounds: int) -> None:
        section: dict[str, Any] = self.results.setdefault(key, {})
        kind = "embed" if key.startswith("embed") else "chat"
        targets = self.usable(targets, kind)
        for r in range(rounds):
            for target in targets:
                try:
                    res = run(target)
                except Exception as exc:
                    res = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                section.setdefault(target.name, {"runs": []})["runs"].append(res)
                self.log(f"  [{key} r{r + 1}] {target.name:<28} {_short(res)}")
        for data in section.values():
            data.update(_medians(data["runs"]))

    # ------------------------------------------------------------ scenarios
    def warmup(self) -> None:
        for target in self.targets:
            try:
                if target in self.usable([target], "chat"):
                    seconds = max(self.plan.warmup_s, target.min_warmup_s)
                    self.wrk_run(target, target.chat_url, self.chat_body(target), 50, seconds)
                if target in self.usable([target], "embed"):
                    self.wrk_run(target, target.embed_url, self.embed_body(target), 10, 1)
            except Exception as exc:
                self.log(f"  warm-up of {target.name} failed: {exc}")

    def chat_throughput(self) -> None:
        self.log("small non-stream chat, 50 connections (throughput)")
        self.rounds("chat_50", self.targets, lambda t: self.wrk_run(t, t.chat_url, self.chat_body(t), 50), self.plan.rounds)

    def chat_latency(self) -> None:
        self.log("small non-stream chat, 10 connections (latency)")
        self.rounds("chat_10", self.targets, lambda t: self.wrk_run(t, t.chat_url, self.chat_body(t), 10), self.plan.rounds)
        self.log("small non-stream chat, 1 connection (service time, no queueing: the added-latency target)")
        self.rounds("chat_1", self.targets, lambda t: self.wrk_run(t, t.chat_url, self.chat_body(t), 1), self.plan.rounds)

    def embeddings(self) -> None:
        self.log("embeddings (384-dim vector), 50 and 10 connections")
        seconds = max(3.0, self.plan.duration_s * 0.8)
        self.rounds("embed_50", self.core, lambda t: self.wrk_run(t, t.embed_url, self.embed_body(t), 50, seconds), 1)
        self.rounds("embed_10", self.core, lambda t: self.wrk_run(t, t.embed_url, self.embed_body(t), 10, seconds), 1)

    def big_prompt(self) -> None:
        self.log("64 KB prompt (routing classification cost), 1 and 10 connections")
        prompt = big_prompt_text(64 * 1024)
        self.rounds(
            "prompt64_1",
            self.core,
            lambda t: self.wrk_run(t, t.chat_url, self.chat_body(t, prompt), 1, max(2.0, self.plan.duration_s * 0.6)),
            1,
        )
        self.rounds(
            "prompt64_10",
            self.core,
            lambda t: self.wrk_run(t, t.chat_url, self.chat_body(t, prompt), 10, max(3.0, self.plan.duration_s * 0.8)),
            1,
        )
        self.results["classification"] = classification_cost(self.run_dir, prompt)

    def _configure_stream_upstream(self, tokens: int, interval_ms: float, first_token_ms: float) -> None:
        body = json.dumps({"tokens": tokens, "interval_ms": interval_ms, "first_token_ms": first_token_ms}).encode()
        req = urllib.request.Request(
            self.stream_upstream.removesuffix("/v1") + "/_config",
            data=body,
            method="POST",
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()

    def _stream_upstream_stats(self, reset: bool = False) -> dict[str, Any]:
        url = self.stream_upstream.removesuffix("/v1") + "/_stats"
        req = urllib.request.Request(
            url,
            data=b'{"reset": true}' if reset else None,
            method="POST" if reset else "GET",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def stream_200(self) -> None:
        p = self.plan
        self.log(
            f"stream of {p.stream_tokens} tokens every {p.stream_interval_ms} ms, first token after "
            f"{p.first_token_ms} ms; {p.stream_count} streams, {p.stream_concurrency} at a time"
        )
        self._configure_stream_upstream(p.stream_tokens, p.stream_interval_ms, p.first_token_ms)
        section = self.results.setdefault("stream", {})
        streaming = self.usable(self.targets, "stream")
        for target in streaming:
            stats = asyncio.run(
                run_streams(
                    target.stream_url,
                    model=target.stream_model,
                    headers=target.stream_headers,
                    count=p.stream_count,
                    concurrency=p.stream_concurrency,
                    expect_tokens=p.stream_tokens,
                    interval_ms=p.stream_interval_ms,
                )
            )
            section[target.name] = _stream_summary(stats)
            self.log(f"  [stream] {target.name:<28} {_short(section[target.name])}")
        # Time to first token with nothing else in flight: the gateway's own overhead, no queueing.
        # Short streams (TTFT does not depend on the length), one at a time.
        self._configure_stream_upstream(20, p.stream_interval_ms, p.first_token_ms)
        for target in streaming:
            stats = asyncio.run(
                run_streams(
                    target.stream_url,
                    model=target.stream_model,
                    headers=target.stream_headers,
                    count=p.stream_solo_count,
                    concurrency=1,
                    expect_tokens=20,
                    interval_ms=p.stream_interval_ms,
                )
            )
            section[target.name].update(
                {
                    "ttft1_p50_ms": round(percentile(stats.ttft_ms, 50), 3),
                    "ttft1_p99_ms": round(percentile(stats.ttft_ms, 99), 3),
                    "solo_errors": stats.errors,
                }
            )
            self.log(
                f"  [stream solo] {target.name:<23} ttft_p50_ms={section[target.name]['ttft1_p50_ms']} errors={stats.errors}"
            )

    def many_streams(self) -> None:
        p = self.plan
        self.log(f"{p.many_streams} concurrent streams ({p.many_tokens} tokens every {p.many_interval_ms} ms)")
        self._configure_stream_upstream(p.many_tokens, p.many_interval_ms, p.first_token_ms)
        section = self.results.setdefault("streams_many", {})
        hold_s = p.many_tokens * p.many_interval_ms / 1000
        for target in self.usable(self.targets, "stream"):
            self._stream_upstream_stats(reset=True)
            log_offset = _log_size(target)
            stats = asyncio.run(
                run_streams(
                    target.stream_url,
                    model=target.stream_model,
                    headers=target.stream_headers,
                    count=p.many_streams,
                    concurrency=p.many_streams,
                    expect_tokens=p.many_tokens,
                    interval_ms=p.many_interval_ms,
                    timeout_s=max(60.0, hold_s * 8),
                )
            )
            upstream = self._stream_upstream_stats()
            summary = _stream_summary(stats)
            summary["upstream_peak_open"] = upstream["peak"]
            summary["rss_mb"] = round(target.service.rss_bytes() / 2**20, 1) if target.service else None
            if stats.errors:
                summary["server_error"] = _server_error(target, log_offset)
            section[target.name] = summary
            self.log(f"  [streams x{p.many_streams}] {target.name:<22} {_short(summary)}")

    def memory(self, target: Target) -> None:
        """``long_requests`` small chat requests at 50 connections, in wrk chunks of at most 30 s
        (sized from the last chunk's rate so the total lands just past the count); RSS of the
        process tree before, after every chunk, and after."""
        assert target.service is not None
        n = self.plan.long_requests
        self.log(f"memory: {n:,} requests through {target.name} at 50 connections")
        body = self.chat_body(target)
        before = target.service.rss_bytes()
        rss = [before]
        chunks: list[dict[str, Any]] = []
        done = 0
        rate = self.results.get("chat_50", {}).get(target.name, {}).get("rps") or 1000.0
        backlog = [self._ledger_queue(target)]
        while done < n and len(chunks) < 100:
            seconds = min(30.0, max(2.0, (n - done) / max(rate, 1.0) + 0.5))
            run = self.wrk_run(target, target.chat_url, body, 50, seconds)
            chunks.append(run)
            rss.append(target.service.rss_bytes())
            backlog.append(self._ledger_queue(target))
            done += run["requests"]
            rate = run["rps"] or rate
            self.log(f"  [memory] {done:,}/{n:,} requests, rps={run['rps']} rss={rss[-1] / 2**20:.1f} MB")
            if run["requests"] == 0:
                break
        time.sleep(1.0)
        after = target.service.rss_bytes()
        backlog.append(self._ledger_queue(target))
        total_s = sum(c["duration_s"] for c in chunks)
        cpu = [c["cpu_us_per_req"] for c in chunks if c.get("cpu_us_per_req") is not None]
        self.results["memory"] = {
            "target": target.name,
            "requests": done,
            "errors": sum(c["errors"] for c in chunks),
            "rps": round(done / total_s, 1) if total_s else 0.0,
            "p50_ms": statistics.median(c["p50_ms"] for c in chunks) if chunks else None,
            "p99_ms": max((c["p99_ms"] for c in chunks), default=None),
            "cpu_us_per_req": round(statistics.median(cpu), 1) if cpu else None,
            "rss_cold_mb": self.results.get("rss_cold_mb", {}).get(target.name),
            "rss_before_mb": round(before / 2**20, 1),
            "rss_peak_mb": round(max([*rss, after]) / 2**20, 1),
            "rss_after_mb": round(after / 2**20, 1),
            "rss_curve_mb": [round(v / 2**20, 1) for v in rss],
            "growth_pct": round((after - before) / before * 100, 2) if before else None,
            "ledger_queue": backlog if any(v is not None for v in backlog) else None,
        }
        self.log(f"  [memory] {_short(self.results['memory'])}")

    @staticmethod
    def _ledger_queue(target: Target) -> int | None:
        """Rows waiting in the gateway's ledger writer (``/metrics``), when it exposes them."""
        base = target.chat_url.split("/v1/", 1)[0]
        try:
            req = urllib.request.Request(f"{base}/metrics", headers=target.headers)
            with urllib.request.urlopen(req, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("switchyard_ledger_queue_depth "):
                return int(float(line.rsplit(" ", 1)[1]))
        return None

    def workers_scaling(self, start: Callable[[int], Target], stop: Callable[[Target], None], single: Target | None) -> None:
        """``--workers N`` against ``single`` (the same variant with one worker), alternating."""
        n = self.plan.workers
        self.log(f"--workers {n}: small chat, 50 connections, against {single.name if single else '-'}")
        try:
            target = start(n)
        except Exception as exc:
            self.results["workers"] = {"workers": n, "failed": str(exc).strip()[:400]}
            self.log(f"  [workers {n}] failed: {exc}")
            return
        try:
            self.wrk_run(target, target.chat_url, self.chat_body(target), 50, self.plan.warmup_s)
            runs, base = [], []
            for _ in range(max(1, self.plan.rounds)):
                if single is not None:
                    base.append(self.wrk_run(single, single.chat_url, self.chat_body(single), 50))
                runs.append(self.wrk_run(target, target.chat_url, self.chat_body(target), 50))
            self.results["workers"] = {
                "workers": n,
                "variant": single.name if single else target.name,
                "runs": runs,
                **_medians(runs),
                "rss_mb": round(target.service.rss_bytes() / 2**20, 1) if target.service else None,
                "single": {
                    **_medians(base),
                    "rss_mb": round(single.service.rss_bytes() / 2**20, 1) if single and single.service else None,
                }
                if base
                else None,
            }
            self.log(f"  [workers {n}] {_short(self.results['workers'])}")
        finally:
            stop(target)


# ---------------------------------------------------------------- helpers


def _log_size(target: Target) -> int:
    try:
        return target.service.log_path.stat().st_size if target.service else 0
    except OSError:
        return 0


def _server_error(target: Target, offset: int) -> str | None:
    """The most frequent exception line the proxy logged since ``offset`` (why requests failed)."""
    if target.service is None:
        return None
    try:
        with open(target.service.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    found = Counter(m.group(0).strip() for m in re.finditer(r"^[A-Za-z_][\w.]*(?:Error|Exception|Timeout)\b:.*$", text, re.M))
    if not found:
        return None
    line, count = found.most_common(1)[0]
    return f"{line[:160]} (x{count} in the server log)"


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return {"failed": runs[-1].get("failed") if runs else "no runs"}
    out: dict[str, Any] = {}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req"):
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 3)
    out["rps_min"] = min(r["rps"] for r in ok)
    out["rps_max"] = max(r["rps"] for r in ok)
    out["errors"] = sum(r["errors"] for r in ok)
    out["requests"] = sum(r["requests"] for r in ok)
    return out


def _stream_summary(stats: StreamStats) -> dict[str, Any]:
    def r(v: float) -> float:
        return round(v, 3)

    return {
        "streams": stats.streams,
        "completed": stats.completed,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "ttft_p50_ms": r(percentile(stats.ttft_ms, 50)),
        "ttft_p99_ms": r(percentile(stats.ttft_ms, 99)),
        "gap_p50_ms": r(percentile(stats.gaps_ms, 50)),
        "gap_p99_ms": r(percentile(stats.gaps_ms, 99)),
        "burst_pct": r(stats.burst_fraction * 100),
        "tokens_mean": r(statistics.mean(stats.tokens)) if stats.tokens else 0,
        "peak_open": stats.peak_open,
        "wall_s": r(stats.wall_s),
    }


def _short(res: dict[str, Any]) -> str:
    keys = (
        "failed",
        "rps",
        "p50_ms",
        "p99_ms",
        "errors",
        "cpu_us_per_req",
        "ttft_p50_ms",
        "gap_p50_ms",
        "burst_pct",
        "completed",
        "peak_open",
        "upstream_peak_open",
        "rss_before_mb",
        "rss_after_mb",
        "growth_pct",
        "load1",
    )
    return " ".join(f"{k}={res[k]}" for k in keys if k in res and res[k] is not None)


def big_prompt_text(size: int) -> str:
    """Realistic mixed prose, a little code and numbers, without planted secrets (so every detector
    has to scan the whole text rather than stop at an early hit)."""
    parts = [
        "The quarterly review covered the migration of the billing service to the new cluster. ",
        "Latency at the 99th percentile fell from 180 ms to 95 ms after the connection pool was resized. ",
        "def settle(invoice, rate):\n    return round(invoice.amount * rate, 2)\n",
        "Open questions: whether the nightly export should move to 02:00 UTC, and who owns the runbook. ",
        "Throughput peaked at 4,200 requests per second during the load test on 14 March. ",
    ]
    out: list[str] = []
    total = 0
    i = 0
    while total < size:
        piece = parts[i % len(parts)]
        out.append(piece)
        total += len(piece)
        i += 1
    return "".join(out)[:size]


def classification_cost(run_dir: Path, prompt: str) -> dict[str, Any]:
    """In-process cost of what Switchyard does per request before calling the upstream: JSON parse
    and ``Router.plan`` (detectors, task heuristic, token estimate, rules, ranking), small vs 64 KB."""
    try:
        import orjson
        import yaml

        from bench.targets import switchyard_config
        from gateway.config import parse_config
        from gateway.runtime import compile_policy
        from routing.types import RoutingRequest, Sensitivity

        config = parse_config(yaml.safe_dump(switchyard_config(run_dir, "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1")))
        router, _ = compile_policy(config)
        out: dict[str, Any] = {}
        for label, content in (("small", QUESTION), ("64k", prompt)):
            raw = orjson.dumps(
                {
                    "model": "auto",
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
                    "max_tokens": 64,
                }
            )
            n = 2000 if label == "small" else 200
            parse, plan = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                body = orjson.loads(raw)
                t1 = time.perf_counter()
                router.plan(
                    RoutingRequest(model="auto", endpoint="chat", body=body, project="bench", project_floor=Sensitivity.PUBLIC),
                    {},
                )
                t2 = time.perf_counter()
                parse.append((t1 - t0) * 1e6)
                plan.append((t2 - t1) * 1e6)
            out[label] = {
                "bytes": len(raw),
                "parse_us_p50": round(statistics.median(parse), 1),
                "plan_us_p50": round(statistics.median(plan), 1),
                "plan_us_p99": round(percentile(plan, 99), 1),
            }
        return out
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"[:300]}
