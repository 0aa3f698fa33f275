"""Serving under load: the Ray Serve app against a single-process FastAPI app.

Both serve the same API (twin_ops.serving.api) over the same retrieval and model code; they differ
only in how it is run:

* **ray** — the Serve app of include/serve/twin.yaml, one replica per deployment: the Embedder
  batches with @serve.batch; the Generator admits requests against their deadline by its measured
  service rate (429 + Retry-After when it cannot make it), batches them within a token budget and
  stops the rows of callers that went away (serving/scheduler.py).
* **baseline** — the LLM Engineer's Handbook shape: one uvicorn process, one FastAPI app calling
  retrieval and generation directly, one request per call (in worker threads, torch using every
  core), no admission control.

Load: POST /rag with the demo author's signature lines, ``--max-tokens`` new tokens each (64), at
concurrency 1, 4, 8, 32 and 64 for ``--seconds`` each (closed loop: each client sends its next
request when the last returns, after waiting Retry-After on a 429, as a polite client does). Same
machine, same run; all of the ray levels, then all of the baseline's (the baseline's abandoned work
would otherwise land on the ray measurements). Then the disconnect check on the ray app: the
latency of a lone request, unloaded and right after a burst of 64 requests whose clients hang up
after 5 s.

Per level: goodput (2xx/s), 429s, 5xx and 504s (client timeouts count as 504), p50/p95 of the
successes, p95 time to a refusal. Targets:
* 0 responses with 5xx or 504 at every level (ray);
* goodput at c=32 and c=64 >= 0.8x the app's best goodput at c <= 8 (no collapse);
* refusals answered in < 1 s (p95), each with Retry-After;
* goodput at c=32 >= 2x the baseline's;
* after the disconnecting burst, a lone request completes in <= 1.5x its unloaded latency.

Serves training.base_model (SmolLM2-135M offline): an empty registry serves the base model.
Uses the Weaviate server of `twin-ops services up` (starts one for the run if none is up). Run:
    .venv/bin/python benchmarks/serve.py            # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import socket  # noqa: E402

import httpx  # noqa: E402

from twin_ops.config import load_params, resolve_paths  # noqa: E402
from twin_ops.demo.content import drop_index, index_demo_authors, read_post, wren_posts  # noqa: E402

CONCURRENCY = (1, 4, 8, 32, 64)
CLIENT_TIMEOUT_S = 180.0  # past the app's own deadline (serving.timeouts.generation_s = 120): a hang, counted as 504


@dataclass
class Result:
    concurrency: int
    seconds: float
    latencies: list[float]  # of the 2xx answers
    refusals: list[float]  # time to each 429
    retry_after_missing: int  # 429s without a Retry-After header
    statuses: Counter[int]  # every answer's status; 504 includes client timeouts
    errors: Counter[str]  # "<status>: <message>" of the failures (not 429s)

    @property
    def goodput(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @staticmethod
    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def signature_lines() -> list[str]:
    return [read_post(post)[0]["signature"] for post in wren_posts()]


async def measure(url: str, concurrency: int, seconds: float, max_tokens: int) -> Result:
    """``concurrency`` clients for ``seconds`` (requests in flight at the end are awaited)."""
    lines = signature_lines()
    result = Result(concurrency, 0.0, [], [], 0, Counter(), Counter())
    counter = iter(range(10**9))

    async def client(http: httpx.AsyncClient, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            body = {"query": lines[n % len(lines)], "max_tokens": max_tokens}
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/rag", json=body)
            except httpx.TimeoutException:
                result.statuses[504] += 1
                result.errors["client timeout"] += 1
                continue
            took = time.perf_counter() - started
            result.statuses[response.status_code] += 1
            if response.status_code == 200:
                result.latencies.append(took)
            elif response.status_code == 429:
                result.refusals.append(took)
                retry_after = response.headers.get("retry-after")
                if retry_after is None:
                    result.retry_after_missing += 1
                await asyncio.sleep(min(float(retry_after or 1), max(stop_at - time.perf_counter(), 0)))
            else:
                result.errors[f"{response.status_code}: {response.text[:120]}"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, started + seconds) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def run_load(name: str, url: str, args) -> dict[int, Result]:
    asyncio.run(measure(url, 2, args.warmup_s, args.max_tokens))  # imports, caches, the rate estimate
    results: dict[int, Result] = {}
    for concurrency in CONCURRENCY:
        r = results[concurrency] = asyncio.run(measure(url, concurrency, args.seconds, args.max_tokens))
        p50, p95 = r.percentile(r.latencies, 0.5), r.percentile(r.latencies, 0.95)
        print(
            f"  {name} c={concurrency}: goodput {r.goodput:.3f}/s, {r.statuses.get(429, 0)} x 429, "
            f"{r.server_errors} x 5xx/504, p50 {p50:.1f}s p95 {p95:.1f}s, "
            f"refusal p95 {r.percentile(r.refusals, 0.95):.3f}s",
            flush=True,
        )
        for error, count in r.errors.most_common(3):
            print(f"    {count}x {error}")
    return results


async def lone_latency(url: str, max_tokens: int, tries: int = 3) -> float:
    lines = signature_lines()
    took = []
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as http:
        for n in range(tries):
            started = time.perf_counter()
            response = await http.post(f"{url}/rag", json={"query": lines[n], "max_tokens": max_tokens})
            if response.status_code != 200:  # a miss, reported as such (e.g. refused behind abandoned work)
                print(f"  lone request: {response.status_code} {response.text[:160]}", flush=True)
                took.append(float("inf"))
                continue
            took.append(time.perf_counter() - started)
    return sorted(took)[len(took) // 2]


async def after_abandoned_burst(url: str, max_tokens: int, burst: int = 64, hang_up_s: float = 5.0) -> float:
    """A burst whose clients hang up after ``hang_up_s``; then a lone request's latency."""
    lines = signature_lines()

    async def impatient(http: httpx.AsyncClient, n: int) -> None:
        with contextlib.suppress(httpx.TimeoutException):
            await http.post(f"{url}/rag", json={"query": lines[n % len(lines)], "max_tokens": max_tokens})

    limits = httpx.Limits(max_connections=burst, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=hang_up_s, limits=limits) as http:
        await asyncio.gather(*(impatient(http, n) for n in range(burst)))
    return await lone_latency(url, max_tokens, tries=1)


def wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} was not healthy within {timeout_s}s")


def baseline_server(port: int, overrides: dict, models_dir: str) -> None:
    """(child process) The single-process app: uvicorn, one worker, the LocalBackend."""
    import uvicorn

    from twin_ops.serving.api import create_api
    from twin_ops.serving.local import LocalBackend

    params = load_params(ROOT / "params.yaml", overrides)
    paths = resolve_paths(params)
    backend = LocalBackend(params, paths.root, Path(models_dir), paths.cache)
    uvicorn.run(create_api(backend, params), host="127.0.0.1", port=port, workers=1, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_weaviate(params, paths) -> bool:
    """Weaviate for the replicas; True when this run started it (and stops it after)."""
    from twin_ops.services import weaviate as weaviate_service

    if weaviate_service.is_running(params):
        return False
    weaviate_service.start_server(params, paths, log=lambda line: None)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60, help="per concurrency level and app")
    parser.add_argument("--warmup-s", type=float, default=15)
    parser.add_argument("--baseline-server", type=str, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.baseline_server:
        spec = json.loads(args.baseline_server)
        baseline_server(spec["port"], spec["overrides"], spec["models_dir"])
        return

    from twin_ops.serving import ops

    suffix = uuid.uuid4().hex[:8].capitalize()
    overrides = {"features": {"documents_alias": f"BenchDocs{suffix}", "chunks_alias": f"BenchChunks{suffix}"}}
    params = load_params(ROOT / "params.yaml", overrides)
    paths = resolve_paths(params)
    work = Path(tempfile.mkdtemp(prefix="twin-bench-serve-"))
    started_weaviate = ensure_weaviate(params, paths)
    print(f"indexing the demo authors into {params.features.chunks_alias} ...")
    index_demo_authors(params, paths, work)
    models_dir = work / "models"  # an empty registry: the base model is served
    results: dict[str, dict[int, Result]] = {}
    try:
        ray_url = ops.start_local(
            params,
            paths,
            port=free_port(),
            app_args={"overrides": overrides, "models_dir": str(models_dir)},
            single_replica=True,
            log=lambda line: None,
        )
        try:
            wait_healthy(ray_url, 300)
            print("the Ray Serve app is up", flush=True)
            results["ray"] = run_load("ray", ray_url, args)
            unloaded = asyncio.run(lone_latency(ray_url, args.max_tokens))
            after_burst = asyncio.run(after_abandoned_burst(ray_url, args.max_tokens))
        finally:
            ops.stop_local()
        port = free_port()
        spec = json.dumps({"port": port, "overrides": overrides, "models_dir": str(models_dir)})
        server = subprocess.Popen([sys.executable, __file__, "--baseline-server", spec])
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(base_url, 300)
            print("the baseline (single-process FastAPI) is up", flush=True)
            results["baseline"] = run_load("baseline", base_url, args)
        finally:
            server.terminate()
            server.wait(30)
    finally:
        drop_index(params)
        if started_weaviate:
            from twin_ops.services.weaviate import stop_server

            stop_server(params, paths, log=lambda line: None)

    report(params, args, results, unloaded, after_burst)


def report(params, args, results: dict[str, dict[int, Result]], unloaded: float, after_burst: float) -> None:
    print()
    print(
        f"model: {params.training.base_model}, /rag, {args.max_tokens} new tokens, {os.cpu_count()} CPUs, "
        f"{args.seconds:g}s per level"
    )
    pct = Result.percentile
    header = (
        f"{'app':>8} {'c':>3} | {'goodput/s':>9} {'429':>5} {'5xx/504':>7} | {'p50 s':>6} {'p95 s':>6} | "
        f"{'refusal p95 s':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(
                f"{name:>8} {c:>3} | {r.goodput:>9.3f} {r.statuses.get(429, 0):>5} {r.server_errors:>7} | "
                f"{pct(r.latencies, 0.5):>6.1f} {pct(r.latencies, 0.95):>6.1f} | {pct(r.refusals, 0.95):>13.3f}"
            )
    ray, base = results["ray"], results["baseline"]
    best_low = max(ray[c].goodput for c in CONCURRENCY if c <= 8)
    refusals = [t for r in ray.values() for t in r.refusals]
    checks = {
        "0 x 5xx/504 at every level (ray)": sum(r.server_errors for r in ray.values()) == 0,
        f"goodput c=32 and c=64 >= 0.8x best c<=8 ({best_low:.3f}/s): "
        f"{ray[32].goodput / best_low:.2f}x, {ray[64].goodput / best_low:.2f}x": min(ray[32].goodput, ray[64].goodput)
        >= 0.8 * best_low,
        f"refusals p95 < 1 s ({pct(refusals, 0.95):.3f}s), all with Retry-After": (
            not refusals or pct(refusals, 0.95) < 1.0
        )
        and all(r.retry_after_missing == 0 for r in ray.values()),
        f"goodput c=32 >= 2x baseline ({ray[32].goodput / max(base[32].goodput, 1e-9):.2f}x)": ray[32].goodput
        >= 2 * base[32].goodput,
        f"lone request after an abandoned burst <= 1.5x unloaded ({after_burst:.1f}s vs {unloaded:.1f}s: "
        f"{after_burst / unloaded:.2f}x)": after_burst <= 1.5 * unloaded,
    }
    for check, ok in checks.items():
        print(f"{'met   ' if ok else 'MISSED'} {check}")


if __name__ == "__main__":
    main()
