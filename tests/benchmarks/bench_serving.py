#!/usr/bin/env python3
"""Load-test the inference server: real test clips sent at fixed rates, side by side for two servers.

Not a test: run it by hand on an otherwise idle machine. It starts ``python -m serving --model-dir DIR`` from
each repository checkout given (default: this one; ``--baseline-repo`` adds another checkout, e.g. a
``git worktree`` of an older commit, run with the same interpreter), then for each offered rate sends
requests open-loop (one every 1/rate seconds, whatever the answers do) for ``--seconds`` seconds while a
second client pings ``/ping`` every 50 ms, and prints per rate: requests/s and audio-seconds/s answered,
latency p50/p95/p99 of the answered ones, 503s (and how fast they came), other errors, ``/ping`` p99; then
the saturation point (the highest answered audio-s/s) and the server's memory before and after::

    python tests/benchmarks/bench_serving.py --model-dir runs/whisper_intensity/latest/train/model
    python tests/benchmarks/bench_serving.py --model-dir DIR --baseline-repo /tmp/old --rates 2,5,10,20
    python tests/benchmarks/bench_serving.py --model-dir DIR \
        --variant ct2-int8:SPEECHOPS_RUNTIME=ctranslate2,SPEECHOPS_CT2_COMPUTE_TYPE=int8

``--variant LABEL:NAME=VALUE,...`` runs this checkout once more with that environment (e.g. another inference
runtime), next to the plain run; ratios are against the baseline checkout if given, else the plain run.

Every request is bounded (``--timeout``) and so is every run (rates x seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class ServerProcess:
    def __init__(self, repo: Path, model_dir: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model-dir", str(model_dir), "--host", "127.0.0.1",
             "--port", str(self.port)], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo), **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with status {self.process.returncode} before it was ready")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the server at {self.url} was not ready within {timeout:.0f} s")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -9


def test_clips(count: int) -> list[tuple[bytes, float]]:
    from steps.common.audio import load_audio, to_wav_bytes
    from steps.common.manifest import read_manifest, resolve_audio

    manifest = REPO_ROOT / "steps/corpus/sample/manifest.jsonl"
    records = [r for r in read_manifest(manifest) if r.split == "test"][:count]
    clips = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    return [(to_wav_bytes(c), c.shape[0] / 16000) for c in clips]


async def offered_load(url: str, clips: list[tuple[bytes, float]], rate: float, seconds: float,
                       timeout: float) -> dict:
    import httpx

    results: list[tuple[int, float, float]] = []  # status, latency, audio seconds
    pings: list[float] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client, \
            httpx.AsyncClient(timeout=timeout) as pinger:

        async def one(body: bytes, audio_s: float) -> None:
            started = time.perf_counter()
            try:
                answer = await client.post(f"{url}/invocations", content=body, headers={"Content-Type": "audio/wav"})
                status = answer.status_code
            except httpx.HTTPError:
                status = 0
            results.append((status, time.perf_counter() - started, audio_s))

        async def ping_loop() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    await pinger.get(f"{url}/ping")
                    pings.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    pings.append(timeout)
                await asyncio.sleep(0.05)

        pinging = asyncio.create_task(ping_loop())
        tasks, started, sent = [], time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            body, audio_s = clips[sent % len(clips)]
            tasks.append(asyncio.create_task(one(body, audio_s)))
            sent += 1
            await asyncio.sleep(max(0.0, sent / rate - (time.perf_counter() - started)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        stop.set()
        await pinging
    ok = [(lat, a) for status, lat, a in results if status == 200]
    busy = [lat for status, lat, _ in results if status == 503]
    latencies = np.array([lat for lat, _ in ok]) if ok else np.array([np.nan])
    return {"offered_rps": rate, "sent": sent, "answered_rps": len(ok) / elapsed,
            "audio_s_per_s": sum(a for _, a in ok) / elapsed,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "p99": float(np.percentile(latencies, 99)), "refused_503": len(busy),
            "refusal_p99": float(np.percentile(busy, 99)) if busy else None,
            "errors": sum(1 for status, _, _ in results if status not in (200, 503)),
            "ping_p99": float(np.percentile(pings, 99)) if pings else float("nan"), "elapsed": elapsed}


def environment(pairs: list[str]) -> dict[str, str]:
    try:
        return dict(kv.split("=", 1) for kv in pairs if kv)
    except ValueError:
        raise SystemExit(f"environment entries are NAME=VALUE, got {pairs}") from None


def run_one(label: str, repo: Path, args, clips, extra_env: dict[str, str] | None = None) -> list[dict]:
    server = ServerProcess(repo, args.model_dir, {**environment(args.env), **(extra_env or {})})
    server.wait_ready()
    asyncio.run(offered_load(server.url, clips[:4], 1.0, 2.0, args.timeout))  # warm-up
    before = rss_mb(server.process.pid)
    rows = []
    for rate in args.rates:
        row = asyncio.run(offered_load(server.url, clips, rate, args.seconds, args.timeout))
        rows.append(row)
        print(f"{label:9s} {rate:6.1f} req/s offered: {row['answered_rps']:5.2f} req/s answered, "
              f"{row['audio_s_per_s']:6.2f} audio-s/s, p50/p95/p99 {row['p50']:.2f}/{row['p95']:.2f}/{row['p99']:.2f} s, "
              f"503s {row['refused_503']}" + (f" (p99 {row['refusal_p99'] * 1000:.0f} ms)" if row["refusal_p99"] else "")
              + f", errors {row['errors']}, /ping p99 {row['ping_p99'] * 1000:.0f} ms", flush=True)
    after = rss_mb(server.process.pid)
    status = server.stop()
    print(f"{label:9s} memory {before:.0f} MB before the load, {after:.0f} MB after; SIGTERM exit status {status}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="a trained model folder (speechops.json)")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout to compare with (e.g. an older commit)")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[2, 5, 10, 20],
                        help="offered requests per second, comma-separated (default 2,5,10,20)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds per rate (default 30)")
    parser.add_argument("--clips", type=int, default=60, help="test-split clips to cycle through (default 60)")
    parser.add_argument("--timeout", type=float, default=30, help="per-request client timeout, seconds")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the servers (e.g. SPEECHOPS_MAX_BATCH=16); repeatable")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:NAME=VALUE,...",
                        help="also run this checkout with that environment, labelled (e.g. another runtime)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    clips = test_clips(args.clips)
    print(f"{len(clips)} test clips, {np.mean([a for _, a in clips]):.2f} s on average; {os.cpu_count()} CPUs")
    table = {}
    if args.baseline_repo:
        table["baseline"] = run_one("baseline", args.baseline_repo.resolve(), args, clips)
    table["this"] = run_one("this", REPO_ROOT, args, clips)
    for variant in args.variant:
        label, _, pairs = variant.partition(":")
        table[label] = run_one(label, REPO_ROOT, args, clips, environment(pairs.split(",")))
    for label, rows in table.items():
        best = max(rows, key=lambda r: r["audio_s_per_s"])
        print(f"{label}: saturation {best['audio_s_per_s']:.2f} audio-s/s ({best['answered_rps']:.2f} req/s) at "
              f"{best['offered_rps']:g} req/s offered")
    reference = "baseline" if "baseline" in table else "this"
    for label, rows in table.items():
        if label != reference:
            ratio = max(r["audio_s_per_s"] for r in rows) / max(r["audio_s_per_s"] for r in table[reference])
            print(f"saturation throughput, {label} / {reference}: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
