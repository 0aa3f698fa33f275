"""Serving throughput and latency: the Ray Serve app against a single-process FastAPI app.

Both serve the same API (twin_ops.serving.api) over the same retrieval and model code; they differ
only in how it is run:

* **ray** — the Serve app of include/serve/twin.yaml, one replica per deployment: the Embedder
  batches with @serve.batch, the Generator with its own batcher (serving/batching.py), and each
  stage runs in its own process (retrieval of the next requests overlaps generation).
* **baseline** — the LLM Engineer's Handbook shape: one uvicorn process, one FastAPI app calling
  retrieval and generation directly, one request per call (in worker threads, torch using every
  core).

Load: POST /rag with the demo author's signature lines, ``--max-tokens`` new tokens each, at
concurrency 1, 8 and 32 (closed loop: each client sends its next request when the last returns),
after a warm-up. Same machine, same run, the load generator in this process. Both servers stay up
for the whole run (idle, each costs next to nothing) and each concurrency level is measured on one,
then the other, so a change in the machine's background load hits both alike.
Target: ray >= 2x baseline requests/s at concurrency 32, with p95 no worse.

Serves training.base_model (SmolLM2-135M offline): an empty registry serves the base model.
Uses the Weaviate server of `twin-ops services up` (starts one for the run if none is up). Run:
    .venv/bin/python benchmarks/serve.py
"""

from __future__ import annotations

import argparse
import asyncio
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

CONCURRENCY = (1, 8, 32)


@dataclass
class Result:
    concurrency: int
    requests: int
    failed: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]  # "<status>: <message>" of the failed requests

    @property
    def rps(self) -> float:
        return (self.requests - self.failed) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(url: str, concurrency: int, requests: int, max_tokens: int, temperature: float | None) -> Result:
    lines = [read_post(post)[0]["signature"] for post in wren_posts()]
    queue = list(range(requests))
    latencies: list[float] = []
    failed = 0
    errors: Counter[str] = Counter()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failed
        while queue:
            n = queue.pop()
            started = time.perf_counter()
            body = {"query": lines[n % len(lines)], "max_tokens": max_tokens, "temperature": temperature}
            response = await http.post(f"{url}/rag", json={k: v for k, v in body.items() if v is not None})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failed += 1
                errors[f"{response.status_code}: {response.text[:120]}"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Result(concurrency, requests, failed, seconds, latencies, errors)


def run_load(urls: dict[str, str], args) -> dict[str, dict[int, Result]]:
    """Each concurrency level on each server in turn (baseline, then ray), so a change in the
    machine's background load during the run hits both sides alike."""
    for url in urls.values():
        asyncio.run(measure(url, 4, args.warmup, args.max_tokens, args.temperature))  # imports, caches, batches
    results: dict[str, dict[int, Result]] = {name: {} for name in urls}
    for concurrency in CONCURRENCY:
        for name, url in urls.items():
            requests = args.requests_per_client * concurrency
            load = measure(url, concurrency, requests, args.max_tokens, args.temperature)
            r = results[name][concurrency] = asyncio.run(load)
            p50, p95 = r.percentile(0.5), r.percentile(0.95)
            print(f"  {name} c={concurrency}: {r.rps:.2f} req/s, p50 {p50:.3f}s, p95 {p95:.3f}s, {r.failed} failed")
            for error, count in r.errors.most_common(3):
                print(f"    {count}x {error}")
    return results


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
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, help="default: serving.generation.default_temperature")
    parser.add_argument("--requests-per-client", type=int, default=4, help="requests = this x concurrency")
    parser.add_argument("--warmup", type=int, default=8)
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
    try:
        port = free_port()
        spec = json.dumps({"port": port, "overrides": overrides, "models_dir": str(models_dir)})
        server = subprocess.Popen([sys.executable, __file__, "--baseline-server", spec])
        try:
            ray_url = ops.start_local(
                params,
                paths,
                port=free_port(),
                app_args={"overrides": overrides, "models_dir": str(models_dir)},
                single_replica=True,
                log=lambda line: None,
            )
            urls = {"baseline": f"http://127.0.0.1:{port}", "ray": ray_url}
            for url in urls.values():
                wait_healthy(url, 300)
            print("both up: baseline (single-process FastAPI) and the Ray Serve app")
            results = run_load(urls, args)
        finally:
            server.terminate()
            server.wait(30)
            ops.stop_local()
    finally:
        drop_index(params)
        if started_weaviate:
            from twin_ops.services.weaviate import stop_server

            stop_server(params, paths, log=lambda line: None)

    print()
    temperature = params.serving.generation.default_temperature if args.temperature is None else args.temperature
    cpus = os.cpu_count()
    model = params.training.base_model
    print(f"model: {model}, {args.max_tokens} new tokens per request, temperature {temperature}, {cpus} CPUs")
    header = f"{'c':>3} | {'ray req/s':>9} {'p50 s':>7} {'p95 s':>7} | {'base req/s':>10} {'p50 s':>7} {'p95 s':>7} |"
    print(header + f" {'throughput x':>12} {'p95 ratio':>9}")
    print("-" * (len(header) + 23))
    for c in CONCURRENCY:
        ray_r, base_r = results["ray"][c], results["baseline"][c]
        print(
            f"{c:>3} | {ray_r.rps:>9.2f} {ray_r.percentile(0.5):>7.3f} {ray_r.percentile(0.95):>7.3f} | "
            f"{base_r.rps:>10.2f} {base_r.percentile(0.5):>7.3f} {base_r.percentile(0.95):>7.3f} | "
            f"{ray_r.rps / base_r.rps:>12.2f} {ray_r.percentile(0.95) / base_r.percentile(0.95):>9.2f}"
        )
    failed = {name: sum(r.failed for r in by_c.values()) for name, by_c in results.items()}
    r32, b32 = results["ray"][32], results["baseline"][32]
    verdict = r32.rps >= 2 * b32.rps and r32.percentile(0.95) <= b32.percentile(0.95)
    print(f"failed requests: {failed}; target (>= 2x at c=32, p95 no worse): {'met' if verdict else 'MISSED'}")


if __name__ == "__main__":
    main()
