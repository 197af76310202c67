#!/usr/bin/env bash
# The cluster's promise, measured the way an operator meets it: one limit
# across the instances, exactly, from the first request after start-up and
# after every restart (docs/design.md, "No cold start").
#
# RUNS times: deploy/cluster.sh up (three instances behind nginx, leased
# quotas on, as deployed), then at once a flood of REQUESTS requests of a
# fresh user through nginx (journal-load -scenario ratelimit -policy user),
# then RESTARTS times a rolling restart followed by another fresh user's
# flood; then down. Each flood must admit exactly the user limit LIMIT.
# Prints one line per flood and a total; exits 1 if any flood admitted
# another count.
#
# Usage: bench/exactness.sh
# Environment: RUNS (10), RESTARTS (2), LIMIT (60), REQUESTS (300),
# CONCURRENCY (50), JOURNAL_REDIS_URL (redis://127.0.0.1:6379; keys under a
# random prefix, deleted at the end), PG_URL (postgres://postgres@127.0.0.1:5432;
# a fresh database is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
RESTARTS=${RESTARTS:-2}
LIMIT=${LIMIT:-60}
REQUESTS=${REQUESTS:-300}
CONCURRENCY=${CONCURRENCY:-50}
REDIS_URL=${JOURNAL_REDIS_URL:-redis://127.0.0.1:6379}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PREFIX="exact$RANDOM$RANDOM:"
DB="journal_exact_$RANDOM$RANDOM"

log() { printf 'exactness.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
for tool in go psql redis-cli curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done

dir=$(mktemp -d)
redis_hp=${REDIS_URL#redis://}
cleanup() {
	deploy/cluster.sh down >/dev/null 2>&1 || true
	redis-cli -h "${redis_hp%:*}" -p "${redis_hp##*:}" --scan --pattern "${PREFIX}*" 2>/dev/null |
		xargs -r -n 500 redis-cli -h "${redis_hp%:*}" -p "${redis_hp##*:}" del >/dev/null 2>&1 || true
	psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

log "building"
go build -o "$dir/journal" ./cmd/journal
go build -o "$dir/journal-load" ./cmd/journal-load
psql -q "$PG_URL/postgres" -c "CREATE DATABASE $DB" >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export RUN_DIR="$dir/cluster" INSTANCES=3 JOURNAL_BIN="$dir/journal"
export LB_ADDR="127.0.0.1:$(port)" BASE_PORT=$(($(port) % 20000 + 10000))
export JOURNAL_DATABASE_URL="$PG_URL/$DB" JOURNAL_REDIS_URL="$REDIS_URL" JOURNAL_REDIS_PREFIX="$PREFIX"
export JOURNAL_RATE_LIMIT_USER="$LIMIT/1h" JOURNAL_RATE_LIMIT_IP=1000000/1h JOURNAL_RATE_LIMIT_SIGNUP=100000/1h
export JOURNAL_LOG_LEVEL=warn JOURNAL_SHUTDOWN_DRAIN=500ms

floods=0
bad=0
flood() {
	local what=$1 admitted
	"$dir/journal-load" -scenario ratelimit -policy user -target "http://$LB_ADDR" \
		-requests "$REQUESTS" -concurrency "$CONCURRENCY" -duration 60s -json "$dir/flood.json" >"$dir/flood.out" 2>&1 || true
	admitted=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["ratelimit"]; print(r["admitted"])' "$dir/flood.json" 2>/dev/null || echo "?")
	floods=$((floods + 1))
	if [ "$admitted" != "$LIMIT" ]; then
		bad=$((bad + 1))
		printf '%-28s admitted %s of %s  <-- not exact\n' "$what" "$admitted" "$LIMIT"
		tail -n 20 "$dir/flood.out" >&2
	else
		printf '%-28s admitted %s of %s\n' "$what" "$admitted" "$LIMIT"
	fi
}

for run in $(seq 1 "$RUNS"); do
	deploy/cluster.sh up >"$dir/up.out" 2>&1 || { cat "$dir/up.out" >&2; die "cluster.sh up failed"; }
	flood "run $run: after up"
	for r in $(seq 1 "$RESTARTS"); do
		deploy/cluster.sh rolling-restart >"$dir/rr.out" 2>&1 || { cat "$dir/rr.out" >&2; die "rolling-restart failed"; }
		flood "run $run: after restart $r"
	done
	deploy/cluster.sh down >/dev/null 2>&1
done
printf '%d floods of %d requests, limit %d: %d exact, %d not\n' "$floods" "$REQUESTS" "$LIMIT" "$((floods - bad))" "$bad"
[ "$bad" -eq 0 ]
