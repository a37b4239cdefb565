#!/usr/bin/env bash
# Installs two jobs into the current user's crontab:
#   - a daily `model-lens-sync sync` at 02:00 UTC      -> logs/cron-sync.log
#   - an hourly `model-lens-sync health` check          -> logs/cron-health.log
# The jobs live between two marker lines, so running this again replaces them (one copy),
# and --uninstall removes exactly them. Use it on hosts that run no `serve` worker (the worker
# has its own schedule).
#
# Each job runs from the project directory (so an embedded PostgreSQL lands in
# ./.model-lens/postgres when DATABASE_URL is unset), reads KEY=value lines from ./.env when
# that file exists (DATABASE_URL, API keys), and also writes the worker's structured logs to
# logs/sync.log and logs/health.log (MODEL_LENS_LOGGING__DIR=logs).
#
# ./.env holds secrets and is run as shell code, so it must be a regular file owned by the
# user whose crontab runs it and private to that user (chmod 600 .env): this script refuses
# to install otherwise, and each job checks again before it reads the file.
#
# Usage: ./setup-cron.sh [--dry-run] [--uninstall] [--binary PATH] [--dir PATH]
set -euo pipefail

readonly BEGIN_MARKER="# BEGIN model-lens-sync (managed by setup-cron.sh; edits here are overwritten)"
readonly END_MARKER="# END model-lens-sync"
readonly SYNC_UTC_HOUR=2
readonly SYNC_UTC_MINUTE=0

usage() {
  cat <<'USAGE'
Usage: setup-cron.sh [options]

Installs a daily sync at 02:00 UTC and an hourly health check into your crontab.
Running it again replaces the installed jobs; it never adds a second copy.

Options:
  --dry-run        print the crontab that would be installed, change nothing
  --uninstall      remove the jobs installed by this script
  --binary PATH    the model-lens-sync binary (default: ./target/release/model-lens-sync,
                   else model-lens-sync on PATH)
  --dir PATH       the working directory of the jobs, holding logs/ and .env
                   (default: the directory of this script)
  -h, --help       show this help
USAGE
}

die() {
  echo "setup-cron.sh: $*" >&2
  exit 2
}

dry_run=false
uninstall=false
binary=""
work_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=true ;;
    --uninstall) uninstall=true ;;
    --binary)
      [ "$#" -ge 2 ] || die "--binary needs a path"
      binary="$2"
      shift
      ;;
    --dir)
      [ "$#" -ge 2 ] || die "--dir needs a path"
      work_dir="$2"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done

command -v crontab >/dev/null 2>&1 || die "crontab not found: install cron (Debian/Ubuntu: apt-get install cron)"

# The current crontab without our block. `crontab -l` fails when the user has none.
current_without_block() {
  local current
  current="$(crontab -l 2>/dev/null || true)"
  printf '%s\n' "$current" | awk -v begin="$BEGIN_MARKER" -v end="$END_MARKER" '
    $0 == begin { skipping = 1; next }
    $0 == end { skipping = 0; next }
    !skipping { print }
  '
}

# Installs the given text as the crontab, or prints it with --dry-run.
install_crontab() {
  local text="$1"
  if "$dry_run"; then
    echo "--- crontab that would be installed (dry run, nothing changed) ---"
    printf '%s\n' "$text"
    return
  fi
  printf '%s\n' "$text" | crontab -
}

if "$uninstall"; then
  if ! crontab -l 2>/dev/null | grep -qxF "$BEGIN_MARKER"; then
    echo "No model-lens-sync jobs are installed; nothing to remove."
    exit 0
  fi
  remaining="$(current_without_block)"
  if [ -z "$remaining" ]; then
    if "$dry_run"; then
      echo "--- dry run: the crontab would be removed (it holds nothing else) ---"
    else
      crontab -r 2>/dev/null || true
      echo "Removed the model-lens-sync jobs; the crontab is now empty."
    fi
  else
    install_crontab "$remaining"
    "$dry_run" || echo "Removed the model-lens-sync jobs from the crontab."
  fi
  exit 0
fi

# Resolve the binary and the directory to absolute paths (cron starts in $HOME with a bare PATH).
[ -d "$work_dir" ] || die "directory not found: $work_dir"
work_dir="$(cd "$work_dir" && pwd)"
if [ -z "$binary" ]; then
  if [ -x "$work_dir/target/release/model-lens-sync" ]; then
    binary="$work_dir/target/release/model-lens-sync"
  elif command -v model-lens-sync >/dev/null 2>&1; then
    binary="$(command -v model-lens-sync)"
  else
    "$dry_run" || die "model-lens-sync not found: build it (cargo build --release) or pass --binary PATH"
    binary="$work_dir/target/release/model-lens-sync"
    echo "note: $binary does not exist yet (dry run continues)" >&2
  fi
fi
case "$binary" in
  /*) ;;
  *) binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")" ;;
esac
if ! "$dry_run"; then
  [ -x "$binary" ] || die "not an executable: $binary"
fi
case "$work_dir$binary" in
  *"'"* | *"%"* | *$'\n'*) die "paths with quotes, % or newlines cannot go into a crontab: $work_dir, $binary" ;;
esac

# ./.env: a regular file (not a link), ours, and private; else nobody should source it.
env_file_problem() {
  local file="$1"
  if [ -L "$file" ]; then
    echo "$file is a symbolic link"
  elif [ ! -f "$file" ]; then
    echo "$file is not a regular file"
  elif [ "$(stat -c %u "$file")" != "$(id -u)" ]; then
    echo "$file belongs to $(stat -c %U "$file"), not to $(id -un)"
  elif [ -n "$(find "$file" -maxdepth 0 -perm /077)" ]; then
    echo "$file can be read or written by others (mode $(stat -c %a "$file")); run: chmod 600 $file"
  fi
}
if [ -e "$work_dir/.env" ] || [ -L "$work_dir/.env" ]; then
  problem="$(env_file_problem "$work_dir/.env")"
  [ -z "$problem" ] || die "refusing to install jobs that source $work_dir/.env: $problem"
fi

# cron reads times in the system's time zone. Convert 02:00 UTC to local time; on machines
# with daylight saving time the conversion shifts by an hour twice a year, so say so.
local_time() {
  date -d "$(printf '%02d:%02d UTC' "$SYNC_UTC_HOUR" "$SYNC_UTC_MINUTE")" '+%-M %-H'
}
read -r sync_minute sync_hour <<<"$(local_time)"
winter_offset="$(date -d '2030-01-15 12:00 UTC' +%z)"
summer_offset="$(date -d '2030-07-15 12:00 UTC' +%z)"
if [ "$winter_offset" != "$summer_offset" ]; then
  echo "note: this machine's time zone has daylight saving time; the sync runs at 02:00 UTC" \
    "only until the next change (re-run this script then, or set the system time zone to UTC)." >&2
fi

# One job line. The subshell exports MODEL_LENS_LOGGING__DIR and the lines of ./.env (which
# may override it) after checking the file again (its mode may have changed since the
# install), then execs the binary; all output is appended to the job's log file. No `%` may
# appear (cron turns it into a newline), hence `find -perm` rather than `stat -c`.
job() {
  local schedule="$1" command="$2" log="$3"
  # shellcheck disable=SC2016 # expanded by the job's shell, not here
  local env_check='[ -f .env ] && [ ! -L .env ] && [ -O .env ] && [ -z "$(find .env -maxdepth 0 -perm /077)" ]'
  local refuse='echo "model-lens-sync: refusing ./.env: it must be a regular file of this user, mode 600" >&2; exit 2'
  printf "%s cd '%s' && mkdir -p logs && ( set -a; MODEL_LENS_LOGGING__DIR=logs; if [ -e .env ] || [ -L .env ]; then if %s; then . ./.env; else %s; fi; fi; set +a; exec '%s' %s ) >> 'logs/%s' 2>&1\n" \
    "$schedule" "$work_dir" "$env_check" "$refuse" "$binary" "$command" "$log"
}

block="$(
  echo "$BEGIN_MARKER"
  echo "# Daily sync at 02:00 UTC ($sync_hour:$(printf '%02d' "$sync_minute") in this machine's time zone) and an hourly health check."
  job "$sync_minute $sync_hour * * *" "sync" "cron-sync.log"
  # At half past, so that the check never starts together with the sync.
  job "30 * * * *" "health" "cron-health.log"
  echo "$END_MARKER"
)"

existing="$(current_without_block)"
if [ -n "$existing" ]; then
  new_crontab="$existing"$'\n\n'"$block"
else
  new_crontab="$block"
fi

install_crontab "$new_crontab"
if ! "$dry_run"; then
  mkdir -p "$work_dir/logs"
  echo "Installed the model-lens-sync jobs (daily sync at 02:00 UTC, hourly health check)."
  echo "Logs: $work_dir/logs/cron-sync.log, $work_dir/logs/cron-health.log. Review: crontab -l"
fi
