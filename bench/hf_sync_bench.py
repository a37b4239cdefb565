#!/usr/bin/env python3
"""End-to-end benchmark of `model-lens-sync sync` on N synthetic Hugging Face models.

It serves N models in the Hub's list shape on 127.0.0.1 (1,000 a page, the next page in a
`Link: <...>; rel="next"` header), runs the release binary against a PostgreSQL that the
caller provides (bench/run.sh starts a throwaway cluster), checks that the sync stored exactly
N rows, and compares its wall time with baselines measured in the same run on the same
database:

* COPY: the very rows the binary stored, exported as text and loaded with `psql \\copy` into a
  fresh table of the same shape and indexes (`LIKE model_snapshots INCLUDING ALL`). This is
  what the machine can ingest; the ratio sync/COPY says how far the pipeline is from it.
* dlt (optional, --dlt): a dlt `rest_api` pipeline (HeaderLinkPaginator) loading the same
  endpoint into another schema of the same database.

Only the standard library is needed (dlt is installed into bench/.venv on request). The models
are generated per page on request from their index (a template per item), so memory does not
grow with N and the same index always gives the same model.

Usually run through bench/run.sh; see bench/README.md.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import gmtime, strftime

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAGE_SIZE = 1000  # the Hub's largest page
LIST_PATH = "/api/models"


# ---------------------------------------------------------------------------------------------
# Synthetic models
# ---------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_MASK96 = (1 << 96) - 1
# 8,192 timestamps, ascending, six hours apart (2020-01-01 .. 2025-08): createdAt picks one,
# lastModified one at most 511 steps later, so lastModified >= createdAt.
_STAMPS = [strftime("%Y-%m-%dT%H:%M:%S.000Z", gmtime(1577836800 + k * 21_601)) for k in range(8192)]
_TAG_POOL = [
    "transformers", "safetensors", "pytorch", "gguf", "text-generation", "conversational", "en",
    "license:apache-2.0", "license:mit", "region:us", "endpoints_compatible",
    "autotrain_compatible", "llama", "mistral", "qwen2", "8-bit", "base_model:finetune",
    "custom_code", "text-generation-inference", "arxiv:2504.07164",
]
_TAG_LISTS = [
    json.dumps([_TAG_POOL[(k * 7 + j * 3) % len(_TAG_POOL)] for j in range(3 + k % 9)], separators=(",", ":"))
    for k in range(64)
]
# Optional keys as the real listing has them: present, null, or absent.
_PIPELINE_TAGS = [
    '"pipeline_tag":"text-generation",', '"pipeline_tag":"text-classification",',
    '"pipeline_tag":"sentence-similarity",', '"pipeline_tag":"image-text-to-text",',
    '"pipeline_tag":null,', "",
]
_LIBRARIES = [
    '"library_name":"transformers",', '"library_name":"gguf",', '"library_name":"diffusers",',
    '"library_name":"peft",', '"library_name":"sentence-transformers",', "",
]
_GATED = ["false", "false", "false", "false", '"auto"', '"manual"']
_ITEM = (
    '{"_id":"%024x","id":"%s","modelId":"%s","likes":%d,"trendingScore":%d,"private":false,'
    '"downloads":%d,"tags":%s,%s%s"createdAt":"%s","lastModified":"%s","gated":%s,"sha":"%016x%024x"}'
)


def model_json(index: int) -> str:
    """The model at `index` of the listing (0-based), as compact JSON, about 460 bytes.

    Deterministic (splitmix64 of the index). Ids are unique (`org-K/model-<index>`); every
    997th is a legacy id without an owner (`legacy-model-<index>`, provider ""). Downloads
    fall with the index (1e9 / (index + 1)), as `sort=downloads&direction=-1` promises.
    """
    h = (index + 0x9E3779B97F4A7C15) * 0xBF58476D1CE4E5B9 & _MASK64
    h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK64
    h ^= h >> 29
    g = h * 0xD6E8FEB86659FD93 & _MASK96
    model_id = f"org-{h % 20011}/model-{index}" if index % 997 else f"legacy-model-{index}"
    created = h & 8191
    downloads = 1_000_000_000 // (index + 1)
    return _ITEM % (
        g, model_id, model_id, downloads // 997 + (h >> 20) % 50, (h >> 8) % 100, downloads,
        _TAG_LISTS[(h >> 13) & 63], _PIPELINE_TAGS[(h >> 19) % 6], _LIBRARIES[(h >> 23) % 6],
        _STAMPS[created], _STAMPS[min(8191, created + ((h >> 27) & 511))], _GATED[(h >> 37) % 6],
        h, g,
    )


# The "changed" listing of the history benchmark, against the base listing of the same N:
# every 200th model (index % 200 == 7) is gone (0.5%), every 100th (index % 100 == 3) has a new
# `sha` (a content change, 1%), every 50th (index % 50 == 11) has one more download (a volatile
# move only, 2%), and N / 200 new models follow the last one (0.5%).
REMOVED_EVERY, REMOVED_AT = 200, 7
CHANGED_EVERY, CHANGED_AT = 100, 3
VOLATILE_EVERY, VOLATILE_AT = 50, 11


def mutated_json(index: int) -> str:
    text = model_json(index)
    if index % CHANGED_EVERY == CHANGED_AT:
        text = text.replace('"sha":"', '"sha":"c0ffee', 1)
    if index % VOLATILE_EVERY == VOLATILE_AT:
        text = re.sub(r'"downloads":(\d+)', lambda m: f'"downloads":{int(m.group(1)) + 1}', text, count=1)
    return text


class Listing:
    """Which model is at which position of a listing of N: `base` is models 0..N-1; `changed`
    drops, alters and appends models as described above. Positions map to indexes by
    arithmetic, so nothing is held per model."""

    def __init__(self, n: int, variant: str = "base"):
        self.n, self.variant = n, variant
        if variant == "base":
            self.kept, self.added = n, 0
        else:
            removed = len(range(REMOVED_AT, n, REMOVED_EVERY))
            self.kept, self.added = n - removed, n // 200
        self.total = self.kept + self.added

    def index_at(self, position: int) -> int:
        if self.variant == "base":
            return position
        if position >= self.kept:
            return self.n + position - self.kept
        block, offset = divmod(position, REMOVED_EVERY - 1)
        return block * REMOVED_EVERY + offset + (1 if offset >= REMOVED_AT else 0)

    def record(self, position: int) -> str:
        index = self.index_at(position)
        return model_json(index) if self.variant == "base" else mutated_json(index)

    def expected_changes(self) -> dict[str, int]:
        """The change rows a sync of this listing must write after a sync of the base one."""
        if self.variant == "base":
            return {}
        changed = sum(1 for i in range(CHANGED_AT, self.n, CHANGED_EVERY))
        return {"added": self.added, "removed": self.n - self.kept, "changed": changed}

    def expected_series(self) -> int:
        """Volatile-only moves: one series row each, no version."""
        if self.variant == "base":
            return 0
        return sum(1 for i in range(VOLATILE_AT, self.n, VOLATILE_EVERY))


def page_body(listing: "Listing", start: int, end: int) -> bytes:
    return ("[" + ",".join([listing.record(p) for p in range(start, end)]) + "]").encode()


# ---------------------------------------------------------------------------------------------
# The fake Hub
# ---------------------------------------------------------------------------------------------


@dataclass
class ServerStats:
    requests: int = 0
    pages: int = 0
    bytes: int = 0
    generate_seconds: float = 0.0


class FakeHub:
    """`GET /api/models?...&limit=L[&cursor=K]` → models K..K+L of N, and a `Link` to the rest.

    The cursor is the index of the next model; the next link repeats the request's other
    parameters (sort, direction, filters) so a client that follows it sees one listing.
    """

    def __init__(self, total: int, cache_dir: Path | None = None):
        self.listing = Listing(total)
        self.cache_dir = cache_dir
        self.stats = ServerStats()
        self._lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the Hub

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hub.handle(self)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset_stats(self) -> ServerStats:
        with self._lock:
            stats, self.stats = self.stats, ServerStats()
        return stats

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(request.path)
        if url.path.rstrip("/") != LIST_PATH:
            self._send(request, 404, b'{"error":"not found"}', {})
            return
        params = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = dict(params)
        try:
            limit = max(1, min(PAGE_SIZE, int(query.get("limit", PAGE_SIZE))))
            start = max(0, int(query.get("cursor", "0")))
        except ValueError:
            self._send(request, 400, b'{"error":"bad limit or cursor"}', {})
            return
        began = time.perf_counter()
        listing = self.listing
        end = min(start + limit, listing.total)
        body = self.page(listing, start, end) if start < end else b"[]"
        headers = {}
        if end < listing.total:
            rest = [(k, v) for k, v in params if k != "cursor"] + [("cursor", str(end))]
            headers["Link"] = f'<{self.base_url}{LIST_PATH}?{urllib.parse.urlencode(rest)}>; rel="next"'
        elapsed = time.perf_counter() - began
        with self._lock:
            self.stats.requests += 1
            self.stats.pages += 1
            self.stats.bytes += len(body)
            self.stats.generate_seconds += elapsed
        self._send(request, 200, body, headers)

    def use_listing(self, variant: str) -> None:
        self.listing = Listing(self.listing.n, variant)

    def warm(self, variant: str) -> None:
        """Writes every page of a listing to the cache before any timed step, so no sync pays
        for the fake Hub's JSON generation (the real Hub's cost is not on this machine)."""
        if self.cache_dir is None:
            return
        listing = Listing(self.listing.n, variant)
        for start in range(0, listing.total, PAGE_SIZE):
            self.page(listing, start, min(start + PAGE_SIZE, listing.total))

    def page(self, listing: Listing, start: int, end: int) -> bytes:
        """A page's body. With a cache dir, generated once per listing and page and then read
        from disk: the Hub's own cost is not on this machine, so the benchmark should not pay
        for generating the same JSON again on every sync (memory stays flat: disk holds it)."""
        if self.cache_dir is None:
            return page_body(listing, start, end)
        path = self.cache_dir / f"{listing.variant}-{listing.n}-{start}-{end}.json"
        try:
            return path.read_bytes()
        except OSError:
            body = page_body(listing, start, end)
            partial = path.with_suffix(f".{threading.get_ident()}.tmp")
            partial.write_bytes(body)
            partial.replace(path)
            return body

    @staticmethod
    def _send(request, status: int, body: bytes, headers: dict) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)


# ---------------------------------------------------------------------------------------------
# PostgreSQL through psql
# ---------------------------------------------------------------------------------------------


class Psql:
    def __init__(self, url: str, bindir: str | None):
        self.url = url
        candidate = Path(bindir, "psql") if bindir else None
        self.psql = str(candidate) if candidate and candidate.exists() else shutil.which("psql")
        if not self.psql:
            sys.exit("psql not found: install postgresql-client or pass --pg-bindir")

    def command(self, *args: str) -> list[str]:
        return [self.psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url, *args]

    def run(self, sql: str) -> str:
        done = subprocess.run(self.command("-c", sql), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def value(self, sql: str) -> str:
        lines = self.run(sql).splitlines()
        return lines[0] if lines else ""

    def rows(self, sql: str) -> list[list[str]]:
        return [line.split("|") for line in self.run(sql).splitlines() if line]

    def timed(self, meta_command: str) -> float:
        """Wall time of one psql process running one (meta-)command, connection included."""
        began = time.perf_counter()
        done = subprocess.run(self.command("-c", meta_command), capture_output=True, text=True)
        elapsed = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {meta_command!r}: {done.stderr.strip()}")
        return elapsed


class PostgresCpu:
    """CPU seconds used by a cluster: the postmaster, its live children, and the children it
    has reaped (backends that ended, autovacuum workers), from /proc. Needs the data dir."""

    def __init__(self, data_dir: str | None):
        self.postmaster = None
        if data_dir:
            try:
                self.postmaster = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                self.postmaster = None
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on

    def exiting_backends(self) -> int:
        """Children of the postmaster that serve a client (title `user db host(port) ...`),
        are exiting, or have exited without being reaped yet (zombies)."""
        count = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = self._stat(int(entry))
                if fields and int(fields[1]) == self.postmaster:
                    if fields[0] in ("Z", "X"):
                        count += 1
                        continue
                    try:
                        title = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                    except OSError:
                        continue
                    # An exiting process has released its memory, so its title reads empty.
                    if not title.strip("\0 ") or re.search(r"\(\d+\)|\[local\]", title):
                        count += 1
        return count

    def settle(self, timeout: float = 5.0) -> None:
        """Waits until the backends of a client that just exited are gone and reaped, so their
        CPU time has moved into the postmaster's cutime/cstime: a backend reaped between the
        two reads of `seconds` would otherwise be counted in neither."""
        if self.postmaster is None:
            return
        deadline = time.monotonic() + timeout
        while self.exiting_backends() and time.monotonic() < deadline:
            time.sleep(0.02)

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        self.settle()
        own = self._stat(self.postmaster)
        if own is None:
            return None
        # utime, stime, cutime, cstime are fields 14..17, i.e. indexes 11..14 here.
        ticks = sum(int(value) for value in own[11:15])
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = self._stat(int(entry))
                if fields and int(fields[1]) == self.postmaster:
                    ticks += int(fields[11]) + int(fields[12])
        return ticks / self.tick


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    exit_code: int
    wall_seconds: float
    max_rss_mb: float
    user_seconds: float
    system_seconds: float


def run_measured(command: list[str], env: dict, cwd: Path, stdout: Path, stderr: Path) -> ProcessRun:
    """Runs a command to completion; its own rusage (peak RSS, CPU) comes from wait4."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:  # stopped (SIGTERM, Ctrl-C): stop the child too, don't orphan it
            child.terminate()
            child.wait()
            raise
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        exit_code=child.returncode,
        wall_seconds=wall,
        max_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
    )


@dataclass
class SyncRun:
    run: int
    kind: str  # "first", "unchanged" or "changed"
    sync_id: int | None
    status: str
    stored: int
    process: ProcessRun
    reported_duration_seconds: float | None
    source_duration_seconds: float | None
    http_requests: int | None
    postgres_cpu_seconds: float | None
    server_cpu_seconds: float
    server: ServerStats
    db_bytes_before: int
    db_bytes_after: int
    changes: dict[str, int] = field(default_factory=dict)
    versions_written: int = 0
    series_written: int = 0
    ok: bool = True
    problem: str = ""

    @property
    def models_per_second(self) -> float:
        return self.stored / self.process.wall_seconds if self.process.wall_seconds else 0.0

    @property
    def growth_bytes(self) -> int:
        return self.db_bytes_after - self.db_bytes_before


@dataclass
class CopyRun:
    run: int
    variants: dict[str, float] = field(default_factory=dict)  # table kind -> seconds


@dataclass
class DltRun:
    run: int
    ok: bool
    wall_seconds: float = 0.0
    pipeline_seconds: float = 0.0
    extract_seconds: float = 0.0
    normalize_seconds: float = 0.0
    load_seconds: float = 0.0
    rows: int = 0
    max_rss_mb: float = 0.0
    problem: str = ""


def process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.repo = Path(args.repo).resolve()
        self.binary = Path(args.binary).resolve() if args.binary else self.repo / "target/release/model-lens-sync"
        self.config = self.repo / "config/default.toml"
        self.db = Psql(args.database_url, args.pg_bindir)
        self.postgres_cpu = PostgresCpu(args.pg_data)
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="hf-sync-bench-work.")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.export_file: Path | None = None
        self.exported_sync: int | None = None

    # -- model-lens-sync -------------------------------------------------------------------

    def sync_env(self, hub: FakeHub) -> dict:
        env = dict(os.environ)
        for name in list(env):  # a developer's own settings must not leak into the benchmark
            if name.startswith("MODEL_LENS_") or name in ("RUST_LOG", "DEBUG", "HF_TOKEN"):
                del env[name]
        env.update(
            DATABASE_URL=self.args.database_url,
            MODEL_LENS_CONFIG=str(self.config),
            MODEL_LENS_SOURCES__MODELS_DEV__ENABLED="false",
            MODEL_LENS_SOURCES__OPENROUTER__ENABLED="false",
            MODEL_LENS_SOURCES__ARTIFICIAL_ANALYSIS__ENABLED="false",
            MODEL_LENS_SOURCES__HUGGINGFACE__BASE_URL=hub.base_url,
            MODEL_LENS_SOURCES__HUGGINGFACE__MAX_MODELS="0",
            MODEL_LENS_SOURCES__HUGGINGFACE__MAX_PAGES="100000",
            MODEL_LENS_SOURCES__HUGGINGFACE__REQUESTS_PER_SECOND="100000",
            MODEL_LENS_SOURCES__HUGGINGFACE__BURST="100000",
        )
        if self.args.rust_log:
            env["RUST_LOG"] = self.args.rust_log
        return env

    def drop_catalog_indexes(self) -> None:
        """Migrates the empty database, then drops the indexes the catalog read API added
        (sql/0007): the syncs then pay only for history's own (--without-catalog-indexes)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_LENS_")}
        env.update(DATABASE_URL=self.args.database_url, MODEL_LENS_CONFIG=str(self.config))
        subprocess.run([str(self.binary), "migrate"], env=env, check=True, capture_output=True)
        names = self.db.value(
            "SELECT string_agg(indexname, ', ') FROM pg_indexes WHERE indexname LIKE 'model_%_catalog_%'")
        if names:
            self.db.run(f"DROP INDEX {names}")
        print(f"without the catalog indexes (dropped: {names or 'none'})", flush=True)

    def last_sync_id(self) -> int:
        if not self.db.value("SELECT to_regclass('model_syncs') IS NOT NULL") == "t":
            return 0
        return int(self.db.value("SELECT coalesce(max(id), 0) FROM model_syncs"))

    def settle_autovacuum(self, timeout: float = 300.0) -> float | None:
        """Waits until autovacuum has analyzed the tables the first sync filled and no
        autovacuum worker runs, as happens between two daily syncs, so that a timed re-sync
        neither competes with it nor plans with the empty tables' statistics. Returns the
        seconds waited, or None after `timeout`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            unanalyzed = self.db.value(
                "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('model_versions', 'model_keys') "
                "AND last_autoanalyze IS NULL AND last_analyze IS NULL"
            )
            working = self.db.value(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            )
            if unanalyzed == "0" and working == "0":
                return time.monotonic() - began
            time.sleep(1)
        return None

    def checkpoint(self) -> None:
        """Starts each timed step with no dirty buffers left by the previous one."""
        self.db.run("CHECKPOINT")

    def database_bytes(self) -> int:
        """Every table of the database with its indexes, TOAST and maps, the benchmark's own
        COPY tables excepted: what a sync grows."""
        if self.db.value("SELECT to_regclass('model_syncs') IS NOT NULL") != "t":
            return 0
        return int(self.db.value(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm') AND n.nspname = 'public' AND c.relname NOT LIKE 'bench\\_copy%'"
        ))

    def run_sync(self, run: int, kind: str, hub: FakeHub, command: list[str] | None = None) -> SyncRun:
        before = self.last_sync_id()
        bytes_before = self.database_bytes()
        self.checkpoint()
        hub.reset_stats()
        postgres_before = self.postgres_cpu.seconds()
        server_before = process_cpu_seconds()
        stdout, stderr = self.work / f"sync-{run}.out", self.work / f"sync-{run}.err"
        process = run_measured(
            command or [str(self.binary), "sync"], self.sync_env(hub), self.work, stdout, stderr
        )
        server_cpu = process_cpu_seconds() - server_before
        postgres_after = self.postgres_cpu.seconds()
        served = hub.reset_stats()

        rows = self.db.rows(
            f"SELECT id, status, duration_ms FROM model_syncs WHERE id > {before} ORDER BY id"
        ) if self.db.value("SELECT to_regclass('model_syncs') IS NOT NULL") == "t" else []
        problems = []
        if process.exit_code != 0:
            problems.append(f"exit code {process.exit_code} (expected 0)")
        if len(rows) != 1:
            problems.append(f"{len(rows)} new model_syncs rows (expected 1)")
        sync_id, status, duration = (int(rows[-1][0]), rows[-1][1], rows[-1][2]) if rows else (None, "-", "")
        stored, source_duration, requests = 0, None, None
        changes: dict[str, int] = {}
        versions = series = 0
        if sync_id is not None:
            stored = int(self.db.value(
                f"SELECT count(*) FROM model_snapshots WHERE source = 'huggingface' AND sync_id = {sync_id}"
            ))
            source = self.db.rows(
                "SELECT duration_ms, http_requests FROM model_sync_sources "
                f"WHERE sync_id = {sync_id} AND source = 'huggingface'"
            )
            if source and source[0][0]:
                source_duration = int(source[0][0]) / 1000
            if source and source[0][1]:
                requests = int(source[0][1])
            changes = {kind_: int(count) for kind_, count in self.db.rows(
                f"SELECT kind, count(*) FROM model_changes WHERE sync_id = {sync_id} GROUP BY kind"
            )}
            versions = int(self.db.value(f"SELECT count(*) FROM model_versions WHERE valid_from_sync = {sync_id}"))
            series = int(self.db.value(f"SELECT count(*) FROM model_volatile_series WHERE sync_id = {sync_id}"))
        listing = hub.listing
        if stored != listing.total:
            problems.append(f"model_snapshots has {stored} huggingface rows for the sync (expected {listing.total})")
        expected = listing.expected_changes()
        if {k: v for k, v in changes.items() if v} != {k: v for k, v in expected.items() if v}:
            problems.append(f"changes {changes} (expected {expected})")
        if kind == "unchanged" and (versions or series):
            problems.append(f"an unchanged listing wrote {versions} versions and {series} series rows (expected 0)")
        if kind == "changed":
            expected_versions = expected["added"] + expected["changed"]
            if versions != expected_versions or series != listing.expected_series():
                problems.append(f"{versions} versions and {series} series rows "
                                f"(expected {expected_versions} and {listing.expected_series()})")
        return SyncRun(
            run=run,
            kind=kind,
            sync_id=sync_id,
            status=status,
            stored=stored,
            process=process,
            reported_duration_seconds=int(duration) / 1000 if duration else None,
            source_duration_seconds=source_duration,
            http_requests=requests,
            postgres_cpu_seconds=(postgres_after - postgres_before)
            if postgres_before is not None and postgres_after is not None else None,
            server_cpu_seconds=server_cpu,
            server=served,
            db_bytes_before=bytes_before,
            db_bytes_after=self.database_bytes(),
            changes=changes,
            versions_written=versions,
            series_written=series,
            ok=not problems,
            problem="; ".join(problems),
        )

    # -- COPY baseline ---------------------------------------------------------------------

    # The COPY baseline's table: model_snapshots as it was a table (sql/0001 + 0003), one row per
    # model per sync, with its unique key and its four indexes. model_snapshots is a view over
    # the versions now, so its definition is written out here.
    SNAPSHOT_TABLE = """(
        sync_id bigint NOT NULL, source text NOT NULL, provider text NOT NULL, model_id text NOT NULL,
        name text, context_length bigint, max_output_tokens bigint, input_price_per_mtok numeric,
        output_price_per_mtok numeric, cache_read_price_per_mtok numeric,
        cache_write_price_per_mtok numeric, input_modalities text[], output_modalities text[],
        supports_tools boolean, supports_reasoning boolean, open_weights boolean, release_date date,
        downloads bigint, likes bigint, intelligence_index numeric, data jsonb NOT NULL,
        content_hash bytea NOT NULL, synced_at timestamptz NOT NULL DEFAULT now(), price_tiers jsonb,
        status text, expires_on date, intelligence_index_version text)"""
    SNAPSHOT_INDEXES = [
        "ALTER TABLE {t} ADD UNIQUE (sync_id, source, provider, model_id)",
        "CREATE INDEX ON {t} (sync_id)",
        "CREATE INDEX ON {t} (synced_at)",
        "CREATE INDEX ON {t} (source)",
        "CREATE INDEX ON {t} (provider)",
    ]
    # The table kinds the stored rows are copied into, the first is the ratio's baseline.
    COPY_TABLES = {
        "like_all": ("bench_copy", SNAPSHOT_TABLE, SNAPSHOT_INDEXES),
        "like_all_fk": (
            "bench_copy_fk",
            SNAPSHOT_TABLE,
            SNAPSHOT_INDEXES + ["ALTER TABLE {t} ADD FOREIGN KEY (sync_id) REFERENCES model_syncs (id) ON DELETE CASCADE"],
        ),
        "heap_only": ("bench_copy_heap", SNAPSHOT_TABLE, []),
    }

    def export_rows(self, sync_id: int) -> None:
        self.export_file = self.work / f"snapshots-{sync_id}.copy"
        self.db.run(
            f"\\copy (SELECT * FROM model_snapshots WHERE sync_id = {sync_id}) TO '{self.export_file}'"
        )
        self.exported_sync = sync_id

    def run_copy(self, run: int) -> CopyRun:
        result = CopyRun(run=run)
        for kind, (table, definition, extra) in self.COPY_TABLES.items():
            self.db.run(f"DROP TABLE IF EXISTS {table}")
            self.db.run(f"CREATE TABLE {table} {definition}")
            for statement in extra:
                self.db.run(statement.format(t=table))
            self.checkpoint()
            result.variants[kind] = self.db.timed(f"\\copy {table} FROM '{self.export_file}'")
            copied = int(self.db.value(f"SELECT count(*) FROM {table}"))
            if copied != self.args.n:
                raise RuntimeError(f"\\copy into {table} loaded {copied} rows, expected {self.args.n}")
        return result

    def psql_overhead(self) -> float:
        """What a psql process costs without work (start + connect), to read small COPY times."""
        return min(self.db.timed("SELECT 1") for _ in range(3))

    # -- dlt -------------------------------------------------------------------------------

    def dlt_python(self) -> tuple[Path | None, str]:
        venv = HERE / ".venv"
        python = venv / "bin/python"
        check = [str(python), "-c", "import dlt, psycopg2; print(dlt.__version__)"]
        if python.exists():
            done = subprocess.run(check, capture_output=True, text=True)
            if done.returncode == 0:
                return python, done.stdout.strip()
        print(f"installing dlt[postgres] into {venv} ...", flush=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "dlt[postgres]"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                return None, f"`{' '.join(step)}` failed: " + " | ".join(tail)
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode != 0:
            return None, "dlt installed but does not import: " + done.stderr.strip().splitlines()[-1]
        return python, done.stdout.strip()

    def run_dlt(self, run: int, hub: FakeHub, python: Path) -> DltRun:
        schema = "dlt_bench"
        self.db.run(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.checkpoint()
        pipelines = self.work / f"dlt-pipelines-{run}"
        shutil.rmtree(pipelines, ignore_errors=True)
        result_file = self.work / f"dlt-{run}.json"
        env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false", DLT_DATA_DIR=str(self.work / "dlt-data"))
        process = run_measured(
            [
                str(python), str(HERE / "dlt_hf_pipeline.py"),
                "--base-url", hub.base_url,
                "--database-url", self.args.database_url,
                "--schema", schema,
                "--pipelines-dir", str(pipelines),
                "--result", str(result_file),
            ],
            env, self.work, self.work / f"dlt-{run}.out", self.work / f"dlt-{run}.err",
        )
        if process.exit_code != 0 or not result_file.exists():
            lines = (self.work / f"dlt-{run}.err").read_text(errors="replace").splitlines()
            # The exception (last unindented line naming an error), not dlt's config warnings.
            errors = [line for line in lines if line[:1].strip() and ("Error" in line or "Exception" in line)]
            return DltRun(run=run, ok=False, wall_seconds=process.wall_seconds,
                          problem=f"exit code {process.exit_code}: " + (errors[-1] if errors else " | ".join(lines[-5:])))
        timings = json.loads(result_file.read_text())
        rows = int(self.db.value(f"SELECT count(*) FROM {schema}.hf_models"))
        return DltRun(
            run=run,
            ok=rows == self.args.n,
            wall_seconds=process.wall_seconds,
            pipeline_seconds=timings["pipeline_seconds"],
            extract_seconds=timings["extract_seconds"],
            normalize_seconds=timings["normalize_seconds"],
            load_seconds=timings["load_seconds"],
            rows=rows,
            max_rss_mb=process.max_rss_mb,
            problem="" if rows == self.args.n else f"loaded {rows} rows, expected {self.args.n}",
        )

    # -- disk ------------------------------------------------------------------------------

    def disk(self) -> dict:
        """Bytes of each table the syncs wrote (with indexes and TOAST), and of the baseline."""
        tables = self.db.rows(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname NOT LIKE 'bench\\_copy%' "
            "ORDER BY 2 DESC"
        )
        copy_total = self.db.value(
            "SELECT pg_total_relation_size('bench_copy') WHERE to_regclass('bench_copy') IS NOT NULL"
        )
        return {
            "tables": {name: int(size) for name, size in tables},
            "bench_copy_total_bytes": int(copy_total) if copy_total else None,
        }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# The budgets of issue 9 (DESIGN.md §8), printed next to the figures; nothing fails on them.
BUDGET_FIRST_SYNC = 1.2  # first full sync / COPY
BUDGET_RESYNC = 0.5  # unchanged re-sync / COPY
BUDGET_GROWTH_BYTES = 16  # per unchanged model per re-sync
BUDGET_RSS_MB = 100


def print_report(bench: Bench, syncs: list[SyncRun], copies: list[CopyRun], dlts: list[DltRun],
                 dlt_note: str, disk: dict | None, psql_overhead: float, environment: dict) -> None:
    n = bench.args.n
    print()
    print(f"== model-lens-sync Hugging Face history benchmark: N = {n:,} models "
          f"({-(-n // PAGE_SIZE):,} pages of {PAGE_SIZE:,})")
    print(f"   {environment['postgres']}; {environment['cpus']} CPUs, load average before "
          f"{environment['load_before']}; binary {environment['binary']}")
    print()

    def line(label: str, values: list[str]) -> None:
        print(f"  {label:<38}" + "".join(f"{cell:>13}" for cell in values))

    print("syncs (`model-lens-sync sync`, wall time of the process; first = empty database, "
          "unchanged = the same listing again, changed = 1% changed, 0.5% added, 0.5% removed, "
          "2% volatile moves)")
    line("", [f"{s.kind} {s.run}" for s in syncs])
    line("wall seconds", [fmt(s.process.wall_seconds) for s in syncs])
    line("models/s", [fmt(s.models_per_second, 0) for s in syncs])
    line("sync duration_ms (model_syncs) s", [fmt(s.reported_duration_seconds) for s in syncs])
    line("peak RSS MB", [fmt(s.process.max_rss_mb, 1) for s in syncs])
    line("binary CPU s (user+sys)", [fmt(s.process.user_seconds + s.process.system_seconds) for s in syncs])
    line("PostgreSQL CPU s (all processes)", [fmt(s.postgres_cpu_seconds) for s in syncs])
    line("fake Hub CPU s (this script)", [fmt(s.server_cpu_seconds) for s in syncs])
    line("HTTP requests / MB served", [f"{s.server.requests}/{s.server.bytes / 1e6:.0f}" for s in syncs])
    line("status / rows in model_snapshots", [f"{s.status}/{s.stored}" for s in syncs])
    line("versions / series rows written", [f"{s.versions_written}/{s.series_written}" for s in syncs])
    line("changes added/removed/changed", [
        f"{s.changes.get('added', 0)}/{s.changes.get('removed', 0)}/{s.changes.get('changed', 0)}" for s in syncs
    ])
    line("database growth MB (all tables)", [fmt(s.growth_bytes / 1e6, 1) for s in syncs])
    line("  bytes per model", [fmt(s.growth_bytes / max(s.stored, 1), 1) for s in syncs])
    for s in syncs:
        if not s.ok:
            print(f"  !! {s.kind} run {s.run}: {s.problem} (output in {bench.work}/sync-{s.run}.out/.err)")
    print()

    copy_median = {}
    if copies:
        print(f"COPY baseline: `psql \\copy` (text) of the {n:,} rows the first sync stored, into a fresh "
              f"table shaped like model_snapshots was (one row per model per sync); wall time of psql "
              f"incl. connect ({psql_overhead * 1000:.0f} ms for a no-op)")
        line("", [f"run {c.run}" for c in copies] + (["median"] if len(copies) > 1 else []))
        labels = {
            "like_all": "unique key + 4 indexes (baseline) s",
            "like_all_fk": "  + FK to model_syncs s",
            "heap_only": "  heap only, no indexes s",
        }
        for kind, label in labels.items():
            values = [c.variants[kind] for c in copies]
            copy_median[kind] = median(values)
            line(label, [fmt(v) for v in values] + ([fmt(copy_median[kind])] if len(copies) > 1 else []))
        print()

    def kind_median(kind: str) -> float | None:
        runs = [s.process.wall_seconds for s in syncs if s.kind == kind and s.ok]
        return median(runs) if runs else None

    first, unchanged, changed = kind_median("first"), kind_median("unchanged"), kind_median("changed")
    copy = copy_median.get("like_all")
    unchanged_runs = [s for s in syncs if s.kind == "unchanged" and s.ok]
    growth = max((s.growth_bytes / max(s.stored, 1) for s in unchanged_runs), default=None)
    rss = max((s.process.max_rss_mb for s in syncs), default=None)

    def verdict(value: float | None, budget: float) -> str:
        return "" if value is None else ("  (budget {}: {})".format(budget, "met" if value <= budget else "NOT met"))

    print("summary (medians)")
    print(f"  {'N':<56}{n:>12,}")
    print(f"  {'COPY seconds (baseline)':<56}{fmt(copy):>12}")
    print(f"  {'first sync seconds':<56}{fmt(first):>12}")
    ratio = first / copy if first and copy else None
    print(f"  {'ratio first sync / COPY':<56}{fmt(ratio):>12}x{verdict(ratio, BUDGET_FIRST_SYNC)}")
    print(f"  {'unchanged re-sync seconds':<56}{fmt(unchanged):>12}")
    ratio = unchanged / copy if unchanged and copy else None
    print(f"  {'ratio unchanged re-sync / COPY':<56}{fmt(ratio):>12}x{verdict(ratio, BUDGET_RESYNC)}")
    print(f"  {'growth per unchanged model per re-sync, bytes (max)':<56}{fmt(growth, 1):>12}"
          f"{verdict(growth, BUDGET_GROWTH_BYTES)}")
    print(f"  {'changed re-sync seconds':<56}{fmt(changed):>12}")
    ratio = changed / copy if changed and copy else None
    print(f"  {'ratio changed re-sync / COPY':<56}{fmt(ratio):>12}x")
    exact = [s for s in syncs if s.kind == "changed"]
    if exact:
        print(f"  {'change counts exact (added, removed, changed)':<56}"
              f"{'yes' if all(s.ok for s in exact) else 'NO':>12}")
    print(f"  {'peak RSS MB (max over runs)':<56}{fmt(rss, 1):>12}{verdict(rss, BUDGET_RSS_MB)}")
    if disk:
        print("  bytes on disk per model after all runs (table + indexes + TOAST):")
        for name, size in disk["tables"].items():
            if size >= 64 * 1024:
                print(f"    {name:<54}{size / n:>12,.0f}")
        if disk["bench_copy_total_bytes"]:
            print(f"    {'(baseline: one snapshot row, bench_copy)':<54}{disk['bench_copy_total_bytes'] / n:>12,.0f}")
    if dlts:
        good = [d for d in dlts if d.ok]
        dlt_median = median([d.wall_seconds for d in good]) if good else None
        print(f"  {'dlt seconds (median, process wall)':<56}{fmt(dlt_median):>12}")
        pipeline_median = median([d.pipeline_seconds for d in good]) if good else None
        print(f"  {'  of which the pipeline (no Python start/imports)':<56}{fmt(pipeline_median):>12}")
        if good:
            print(f"  {'  dlt peak RSS MB':<56}{fmt(max(d.max_rss_mb for d in good), 1):>12}")
        ratio = dlt_median / first if dlt_median and first else None
        print(f"  {'ratio dlt / first sync (process wall times)':<56}{fmt(ratio, 1):>12}x")
        for d in dlts:
            if not d.ok:
                print(f"  !! dlt run {d.run}: {d.problem}")
    if dlt_note:
        print(f"  dlt: {dlt_note}")
    print()


def environment_facts(bench: Bench) -> dict:
    try:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "?"
    try:
        postgres = bench.db.value("SELECT version()").split(" on ")[0]
    except RuntimeError:
        postgres = "PostgreSQL ?"
    return {
        "postgres": postgres,
        "cpus": os.cpu_count(),
        "load_before": load,
        "binary": str(bench.binary),
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Usually run through bench/run.sh, which builds the binary and starts a throwaway "
               "PostgreSQL; see bench/README.md.",
    )
    parser.add_argument("--n", type=int, default=10_000, help="models to serve and sync (default 10000)")
    parser.add_argument("--runs", type=int, default=1,
                        help="unchanged re-syncs and COPY baselines (medians are reported); there is always "
                             "one first sync and one changed re-sync")
    parser.add_argument("--no-page-cache", action="store_true",
                        help="generate every page on every request (default: once per listing, then from disk)")
    dlt = parser.add_mutually_exclusive_group()
    dlt.add_argument("--dlt", dest="dlt", action="store_true", help="also time a dlt rest_api pipeline")
    dlt.add_argument("--no-dlt", dest="dlt", action="store_false", help="skip dlt (default)")
    parser.set_defaults(dlt=False)
    parser.add_argument("--without-catalog-indexes", action="store_true",
                        help="drop the catalog's indexes (sql/0007) before the first sync, to measure "
                             "what they cost the syncs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the bench tables and work files (run.sh: also the cluster)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL to use (a throwaway one: the bench creates and drops tables)")
    parser.add_argument("--pg-bindir", help="folder with psql (default: PATH)")
    parser.add_argument("--pg-data", help="the cluster's data dir, to count PostgreSQL CPU time")
    parser.add_argument("--repo", default=str(REPO), help="the model-lens-sync checkout (default: ..)")
    parser.add_argument("--binary", help="default: <repo>/target/release/model-lens-sync")
    parser.add_argument("--work-dir", help="where outputs and the exported rows go (default: a temp dir)")
    parser.add_argument("--rust-log", help="RUST_LOG for the binary, e.g. model_lens_sync=debug (slows it)")
    parser.add_argument("--perf", action="store_true",
                        help="after the timed runs, one more sync under `perf record` and its top symbols")
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    parser.add_argument("--serve-only", action="store_true",
                        help="only serve the N models and print the URL (for manual runs); Ctrl-C stops")
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be at least 1")
    if not args.database_url and not args.serve_only:
        parser.error("no database: pass --database-url (or BENCH_DATABASE_URL), or use bench/run.sh")
    return args


def perf_profile(bench: Bench, hub: FakeHub, run: int) -> None:
    perf = shutil.which("perf")
    if not perf:
        print("perf: not installed, skipped")
        return
    data = bench.work / "perf.data"
    profiled = bench.run_sync(run, "unchanged", hub, [perf, "record", "-F", "2999", "-g", "-o", str(data), "--",
                                                       str(bench.binary), "sync"])
    print(f"perf: profiled sync took {profiled.process.wall_seconds:.2f} s ({profiled.problem or 'ok'})")
    report = subprocess.run(
        [perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "symbol",
         "--percent-limit", "1.5", "-g", "none"],
        capture_output=True, text=True,
    )
    lines = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
    print("perf: binary CPU by symbol (self time, >= 1.5%):")
    for entry in lines[:30]:
        print("   " + re.sub(r"(\s+-)+\s*$", "", entry.strip()))
    print(f"perf: full data in {data} (perf report -i {data}; kept with --keep)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM (run.sh's trap) unwinds like Ctrl-C, so a running sync is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    if args.serve_only:
        with FakeHub(args.n) as hub:
            print(f"serving {args.n} models at {hub.base_url}{LIST_PATH}?sort=downloads&direction=-1&limit=1000",
                  flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                return 0
    bench = Bench(args)
    if not bench.binary.exists():
        print(f"no binary at {bench.binary}: run `cargo build --release` (bench/run.sh does)", file=sys.stderr)
        return 2
    if bench.last_sync_id() != 0:
        print("the database already holds syncs: the first sync must start from an empty database "
              "(bench/run.sh starts a fresh cluster)", file=sys.stderr)
        return 2
    if args.without_catalog_indexes:
        bench.drop_catalog_indexes()
    environment = environment_facts(bench)
    syncs: list[SyncRun] = []
    copies: list[CopyRun] = []
    dlts: list[DltRun] = []
    dlt_note = ""
    psql_overhead = 0.0
    cache = None if args.no_page_cache else bench.work / "pages"
    if cache:
        cache.mkdir(parents=True, exist_ok=True)

    def sync(kind: str) -> SyncRun:
        run = len(syncs) + 1
        print(f"sync {run}: {kind} ...", flush=True)
        result = bench.run_sync(run, kind, hub)
        syncs.append(result)
        print(f"  {result.process.wall_seconds:.2f} s, exit {result.process.exit_code}, "
              f"{result.stored} rows in the snapshot, changes {result.changes or '{}'}"
              + (f"  !! {result.problem}" if result.problem else ""), flush=True)
        if not result.ok:
            show_output(bench, result)
        return result

    with FakeHub(args.n, cache) as hub:
        if cache:
            print("writing the fake Hub's pages to its cache (not timed) ...", flush=True)
            hub.warm("base")
            hub.warm("changed")
        first = sync("first")
        if first.ok:
            bench.export_rows(first.sync_id)
            psql_overhead = bench.psql_overhead()
            for run in range(1, args.runs + 1):
                print(f"copy run {run}/{args.runs} ...", flush=True)
                copies.append(bench.run_copy(run))
            print("waiting for autovacuum to process the first sync's tables (not timed) ...", flush=True)
            waited = bench.settle_autovacuum()
            print("  " + (f"{waited:.0f} s" if waited is not None else "gave up after 300 s"), flush=True)
            for _ in range(args.runs):
                sync("unchanged")
            hub.use_listing("changed")
            sync("changed")
            hub.use_listing("base")
        if args.dlt:
            python, version = bench.dlt_python()
            if python is None:
                dlt_note = f"skipped: {version}"
            else:
                dlt_note = f"dlt {version}, rest_api + HeaderLinkPaginator, max_table_nesting=0, postgres insert_values"
                for run in range(1, args.runs + 1):
                    print(f"dlt run {run}/{args.runs} ...", flush=True)
                    dlts.append(bench.run_dlt(run, hub, python))
        if args.perf and first.ok:
            perf_profile(bench, hub, len(syncs) + 1)
    disk = bench.disk() if first.sync_id else None
    print_report(bench, syncs, copies, dlts, dlt_note, disk, psql_overhead, environment)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "n": args.n,
            "environment": environment,
            "syncs": [asdict(s) | {"models_per_second": s.models_per_second, "growth_bytes": s.growth_bytes}
                      for s in syncs],
            "copies": [asdict(c) for c in copies],
            "dlt": [asdict(d) for d in dlts],
            "dlt_note": dlt_note,
            "disk": disk,
            "psql_overhead_seconds": psql_overhead,
        }, indent=2))
    if not args.keep:
        for table, _, _ in Bench.COPY_TABLES.values():
            bench.db.run(f"DROP TABLE IF EXISTS {table}")
        if bench.export_file:
            bench.export_file.unlink(missing_ok=True)
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    return 0 if syncs and all(s.ok for s in syncs) and all(d.ok for d in dlts) else 1


def show_output(bench: Bench, sync: SyncRun) -> None:
    for suffix in ("out", "err"):
        path = bench.work / f"sync-{sync.run}.{suffix}"
        lines = path.read_text(errors="replace").splitlines()
        print(f"  --- last lines of {path} ({len(lines)} lines)")
        for text in lines[-25:]:
            print("  | " + text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
