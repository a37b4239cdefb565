#!/usr/bin/env python3
"""Latency of the catalog read API (`GET /api/models`) on a catalog of N models.

It fills a PostgreSQL that the caller provides (bench/run.sh --catalog starts a throwaway
cluster) with the history of two finished syncs of N synthetic models each, written straight
into history's tables: the second sync replaced every 10th model's version and removed every
50th (the closed versions are history the query must skip) and moved the downloads of a third
of the Hugging Face models (a series point: the catalog shows the current values), across the
four sources in the proportions of a real catalog with a deep Hugging Face listing, with NULLs
where sources have no value. Then it starts the release binary's `serve` on a free port and times R sequential
requests (one keep-alive connection) per query shape: the default order, each sort key, the
filters, a substring search, and pages deep into a cursor walk. Baseline measured in the same
run: `GET /healthz` (the HTTP floor of the same server). It prints p50, p90, p99 and max per
shape and the ratio of each p99 to the baseline's.

With --redis it measures the Redis publication instead: a private redis-server, then
`model-lens-sync publish` of the whole catalog (rows streamed from PostgreSQL in chunks),
timed, with the process's peak RSS (VmHWM). Baseline in the same run: the peak RSS of
`model-lens-sync models --limit 1` (the binary's floor with the same pool and runtime). Run it
for two N to see whether memory grows with the catalog.

A benchmark, not a test: nothing is asserted about time. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Shares of the catalog per source (the rest is Hugging Face), as in a sync with a deep hub.
SHARES = {"models_dev": 0.02, "openrouter": 0.005, "artificial_analysis": 0.001}


def say(message: str) -> None:
    print(f"[catalog-bench] {message}", file=sys.stderr, flush=True)


def psql(bindir: str, url: str, sql: str) -> str:
    result = subprocess.run(
        [os.path.join(bindir, "psql"), url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def fill(bindir: str, url: str, n: int, syncs: int) -> None:
    """`syncs` finished syncs of n models each, stored as history stores them (DESIGN.md §8):
    every model's version from the first sync, and (with two syncs or more) in the last sync every 10th model replaced
    by a new version (its old one closed), every 50th removed (closed, with a replacement key
    added so N stay current), and every 3rd Hugging Face model's downloads and likes moved (a
    series point; the current values differ from the version's). The catalog must read the
    current versions with the current values and skip the rest. Rows go through SQL, not the
    pipeline: this measures reads, and SQL fills millions of rows in a minute."""
    counts = {source: max(1, int(n * share)) for source, share in SHARES.items()}
    counts["huggingface"] = n - sum(counts.values())
    last = syncs
    for sync_id in range(1, syncs + 1):
        psql(
            bindir,
            url,
            f"INSERT INTO model_syncs (id, started_at, finished_at, status, trigger, models_stored)"
            f" VALUES ({sync_id}, now() - interval '{syncs + 1 - sync_id} days', now() - interval '{syncs + 1 - sync_id} days'"
            f" + interval '10 minutes', 'success', 'schedule', {n})",
        )
        for source, count in counts.items():
            psql(
                bindir,
                url,
                f"INSERT INTO model_sync_sources (sync_id, source, status, models_fetched, models_stored, snapshot_rows)"
                f" VALUES ({sync_id}, '{source}', 'success', {count}, {count}, {count})",
            )
    # With one sync there is nothing to replace, remove or move.
    history = str(syncs >= 2).lower()
    offset = 0
    for source, count in counts.items():
        removed = (count - 7) // 50 + 1 if count >= 7 and syncs >= 2 else 0
        priced = str(source != "huggingface").lower()
        # Deterministic pseudo-random values from the row number; ~8% NULL prices and contexts
        # where a source has them, ties on purpose (prices on a coarse grid). i > count are the
        # keys added in the last sync in place of the removed ones.
        version = f"""
            SELECT {offset} + i AS key_id, '{source}' AS source, 'org-' || (i % 5000) AS provider,
                   'org-' || (i % 5000) || '/model-' || i AS model_id, 'Model ' || i AS name,
                   CASE WHEN {priced} AND i % 13 <> 0 THEN 4096 * (1 + i % 64) END AS context_length,
                   CASE WHEN {priced} THEN 1024 * (1 + i % 32) END AS max_output_tokens,
                   CASE WHEN {priced} AND i % 12 <> 0 THEN ((i * 7919) % 4000) / 100.0 END AS input_price,
                   CASE WHEN {priced} AND i % 12 <> 0 THEN ((i * 104729) % 16000) / 100.0 END AS output_price,
                   CASE WHEN NOT {priced} THEN (i * 2654435761) % 10000000 END AS downloads,
                   CASE WHEN NOT {priced} THEN (i * 40503) % 5000 END AS likes,
                   CASE WHEN '{source}' = 'artificial_analysis' THEN ((i * 31) % 700) / 10.0 END AS intelligence_index,
                   jsonb_build_object('id', i, 'padding', repeat('x', 400)) AS data,
                   decode(md5(i::text), 'hex') AS record_hash,
                   {history} AND i <= {count} AND i % 10 = 0 AS replaced,
                   {history} AND i <= {count} AND i % 50 = 7 AS removed,
                   {history} AND NOT {priced} AND i <= {count} AND i % 3 = 0 AND i % 10 <> 0 AND i % 50 <> 7 AS moved,
                   i > {count} AS added
              FROM generate_series(1::bigint, {count + removed}) AS i"""
        first = 1
        psql(
            bindir,
            url,
            f"""
            CREATE TEMP TABLE bench_rows AS {version};
            INSERT INTO model_keys (source, provider, model_id, id, first_sync_id, latest_from_sync, closed_as,
                                    content_hash, record_hash, downloads, likes)
            SELECT source, provider, model_id, key_id, CASE WHEN added THEN {last} ELSE {first} END,
                   CASE WHEN added OR replaced THEN {last} ELSE {first} END,
                   CASE WHEN removed THEN 'removed' END, record_hash, record_hash,
                   CASE WHEN moved THEN downloads + 1 ELSE downloads END,
                   CASE WHEN moved THEN likes + 1 ELSE likes END
              FROM bench_rows;
            -- The first versions (closed in the last sync when replaced or removed).
            INSERT INTO model_versions (key_id, valid_from_sync, valid_to_sync, end_reason, source, provider,
                model_id, name, context_length, max_output_tokens, input_price_per_mtok, output_price_per_mtok,
                downloads, likes, intelligence_index, data, content_hash, record_hash)
            SELECT key_id, CASE WHEN added THEN {last} ELSE {first} END,
                   CASE WHEN replaced OR removed THEN {last} END,
                   CASE WHEN removed THEN 'removed' WHEN replaced THEN 'replaced' END,
                   source, provider, model_id, name, context_length, max_output_tokens, input_price,
                   output_price, downloads, likes, intelligence_index, data, record_hash, record_hash
              FROM bench_rows;
            -- The replacing versions: other prices and names.
            INSERT INTO model_versions (key_id, valid_from_sync, source, provider, model_id, name,
                context_length, max_output_tokens, input_price_per_mtok, output_price_per_mtok, downloads,
                likes, intelligence_index, data, content_hash, record_hash)
            SELECT key_id, {last}, source, provider, model_id, name || ' v2', context_length, max_output_tokens,
                   input_price + 0.5, output_price + 0.5, downloads, likes, intelligence_index,
                   data || '{{"v": 2}}', record_hash, record_hash
              FROM bench_rows WHERE replaced;
            INSERT INTO model_volatile_series (key_id, sync_id, downloads, likes, record_hash)
            SELECT key_id, {last}, downloads + 1, likes + 1, record_hash
              FROM bench_rows WHERE moved;
            DROP TABLE bench_rows;
            """,
        )
        offset += count * 2
    psql(bindir, url, f"SELECT setval('model_syncs_id_seq', {syncs}); SELECT setval('model_keys_id_seq', {offset})")
    psql(bindir, url, "VACUUM ANALYZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def time_requests(connection: http.client.HTTPConnection, paths: list[str]) -> list[float]:
    timings = []
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        timings.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}: {body[:300]!r}")
    return timings


def get_json(connection: http.client.HTTPConnection, path: str) -> dict:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {body[:300]!r}")
    return json.loads(body)


def run_measured(command: list[str], env: dict, log) -> tuple[float, float]:
    """Runs a command to completion; its wall seconds and peak RSS in MB. The peak is the
    process's own VmHWM, polled every 20 ms: wait4's ru_maxrss would include this Python
    process's memory, which the child inherits at fork and keeps across exec."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    peak_kb = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    if child.returncode != 0:
        raise SystemExit(f"{command} exited {child.returncode}")
    return time.perf_counter() - started, peak_kb / 1024


def bench_redis(binary: str, env: dict, args) -> int:
    port = free_port()
    redis_dir = os.path.join(args.work_dir, "redis")
    os.makedirs(redis_dir, exist_ok=True)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", redis_dir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        env = dict(env, REDIS_URL=f"redis://127.0.0.1:{port}/0", MODEL_LENS_REDIS__PUBLISH_TIMEOUT_SECS="7200")
        with open(os.path.join(args.work_dir, "catalog-publish.log"), "w") as log:
            _, floor_rss = run_measured([binary, "models", "--limit", "1"], env, log)
            seconds, rss = run_measured([binary, "publish"], env, log)
        fields = sum(
            int(subprocess.run(["redis-cli", "-p", str(port), "hlen", f"model_lens:catalog:{source}"],
                               capture_output=True, text=True).stdout.strip() or 0)
            for source in ["models_dev", "openrouter", "huggingface", "artificial_analysis"]
        )
        memory = subprocess.run(["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, text=True).stdout
        used = next(line.split(":")[1] for line in memory.splitlines() if line.startswith("used_memory_human:"))
    finally:
        redis.terminate()
        redis.wait(timeout=30)
    if fields != args.n:
        raise SystemExit(f"Redis holds {fields} fields, expected {args.n}")
    print()
    print(f"Redis publication of a catalog of {args.n:,} models (chunks of 1,000; Redis now uses {used.strip()})")
    print(f"{'what':<44} {'seconds':>8} {'models/s':>10} {'peak RSS MB':>12} {'RSS / floor':>12}")
    print(f"{'models --limit 1 (baseline: the floor)':<44} {'':>8} {'':>10} {floor_rss:>12.1f} {1:>11.1f}x")
    print(f"{'publish':<44} {seconds:>8.1f} {args.n / seconds:>10,.0f} {rss:>12.1f} {rss / floor_rss:>11.1f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pg-bindir", required=True)
    parser.add_argument("--repo", default=str(HERE.parent))
    parser.add_argument("--work-dir", default="/tmp")
    parser.add_argument("--n", type=int, default=300_000, help="models in the current catalog")
    parser.add_argument("--requests", type=int, default=200, help="requests per query shape")
    parser.add_argument("--syncs", type=int, default=2, help="finished syncs of N models (the last is current)")
    parser.add_argument("--redis", action="store_true", help="time the Redis publication instead of the API")
    parser.add_argument("--catalog", action="store_true", help="(consumed by run.sh)")
    args, _ = parser.parse_known_args()

    binary = os.path.join(args.repo, "target", "release", "model-lens-sync")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_LENS_", "RUST_LOG", "DEBUG"))}
    env.update(
        {
            "DATABASE_URL": args.database_url,
            "MODEL_LENS_CONFIG": os.path.join(args.repo, "config", "default.toml"),
            "MODEL_LENS_SCHEDULE__ENABLED": "false",
            "MODEL_LENS_HTTP__PUBLIC_READ": "true",
            "MODEL_LENS_LOGGING__FORMAT": "json",
            "RUST_LOG": "warn",
        }
    )
    subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    fill(args.pg_bindir, args.database_url, args.n, args.syncs)
    total = psql(args.pg_bindir, args.database_url, "SELECT count(*) FROM model_versions")
    current = int(psql(args.pg_bindir, args.database_url, "SELECT count(*) FROM model_catalog"))
    if current != args.n:
        raise SystemExit(f"the catalog holds {current} models, expected {args.n}")
    say(f"filled {total} versions ({args.syncs} syncs of {args.n:,}) in {time.perf_counter() - started:.1f} s")
    if args.redis:
        return bench_redis(binary, env, args)

    port = free_port()
    env["MODEL_LENS_HTTP__LISTEN"] = f"127.0.0.1:{port}"
    log = open(os.path.join(args.work_dir, "catalog-serve.log"), "w")
    server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        deadline = time.time() + 60
        while True:
            try:
                connection.request("GET", "/readyz")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                connection.close()
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("serve did not become ready; see catalog-serve.log")
            time.sleep(0.2)

        first = get_json(connection, "/api/models?limit=1")
        if not first["models"] or first["models"][0]["sync_id"] != args.syncs:
            raise SystemExit(f"the catalog does not name the last sync: {first}")
        # A cursor 100 pages deep into the price order (and the pages after it).
        path = "/api/models?sort=input_price&limit=50"
        cursor = None
        for _ in range(100):
            page = get_json(connection, path + (f"&after={cursor}" if cursor else ""))
            cursor = page["next_after"]
        deep = []
        for _ in range(args.requests):
            deep.append(f"{path}&after={cursor}")
            cursor = get_json(connection, deep[-1])["next_after"]

        shapes = {
            "GET /healthz (baseline)": ["/healthz"] * args.requests,
            "default order, 50": ["/api/models?limit=50"] * args.requests,
            "sort=input_price, 50": ["/api/models?sort=input_price&limit=50"] * args.requests,
            "sort=output_price desc, 50": ["/api/models?sort=output_price&order=desc&limit=50"] * args.requests,
            "sort=context_length, 50": ["/api/models?sort=context_length&limit=50"] * args.requests,
            "sort=intelligence_index, 50": ["/api/models?sort=intelligence_index&limit=50"] * args.requests,
            "sort=downloads, 50": ["/api/models?sort=downloads&limit=50"] * args.requests,
            "sort=downloads, 1000": ["/api/models?sort=downloads&limit=1000"] * args.requests,
            "source=openrouter&sort=input_price": ["/api/models?source=openrouter&sort=input_price&limit=50"]
            * args.requests,
            "sort=downloads asc, 50": ["/api/models?sort=downloads&order=asc&limit=50"] * args.requests,
            "provider=org-42": ["/api/models?provider=org-42&limit=50"] * args.requests,
            "provider=org-42&sort=input_price": ["/api/models?provider=org-42&sort=input_price&limit=50"]
            * args.requests,
            "q=<varied substring>": [
                "/api/models?" + urllib.parse.urlencode({"q": f"model-{i * 37 % 9973}", "limit": 50})
                for i in range(args.requests)
            ],
            "input_price pages 101+ (cursor)": deep,
        }
        results = {}
        for name, paths in shapes.items():
            time_requests(connection, paths[:5])  # warm the plan cache and the pages
            results[name] = time_requests(connection, paths)
            say(f"{name}: p99 {percentile(results[name], 99):.1f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    baseline = percentile(results["GET /healthz (baseline)"], 99)
    print()
    print(f"catalog of {args.n:,} current models ({total} versions), {args.requests} sequential requests per shape")
    print(f"{'shape':<38} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/healthz':>12}")
    for name, timings in results.items():
        p99 = percentile(timings, 99)
        print(
            f"{name:<38} {statistics.median(timings):>8.1f} {percentile(timings, 90):>8.1f} {p99:>8.1f}"
            f" {max(timings):>8.1f} {p99 / baseline:>11.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
