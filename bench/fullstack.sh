#!/usr/bin/env bash
# The full-stack goal (docs/design.md, "Numbers"), measured in one run with wrk:
# a cached GET /v1/entries/{id} of the journal service with Redis backends
# (IP limit + auth + user limit + near-cache hit, limits set high, log level
# warn), with leased quotas (the default) and in exact mode
# (JOURNAL_RATE_LIMIT_LEASE=0), against a bare net/http handler writing the
# same bytes and headers (bench/journal-bare replays the recorded response),
# with the memory-backend figure beside it, and the Redis commands each
# request cost (INFO's total_commands_processed over the run on a Redis of
# its own: the commands scripts run and background ones count too, so it is
# an upper bound of the round trips); then a paced run at
# half of the Redis-backend peak for its p99 (wrk cannot pace and Debian has
# no wrk2: `journal-bare pace`).
#
# Self-contained and bounded (about 75 s): builds both binaries, starts the
# bare server and two journal instances (Redis, memory) on free loopback
# ports over SQLite files in a temporary directory (BENCH_DATABASE_URL may
# name a PostgreSQL database instead; both instances then share it), creates
# a user, a token and an entry with curl, warms up, measures, prints one
# table, and stops everything it started. Redis keys live under a random
# prefix and are deleted at the end.
#
# Usage: bench/fullstack.sh
# Environment: JOURNAL_REDIS_URL (default: a private redis-server started on a
# free port, so that no other client's commands count), DURATION (5s) of
# each wrk run and of each paced run, ROUNDS (2) of the three wrk runs,
# interleaved so that a burst of other load on the machine does not land
# on one target only, CONNS (64), THREADS (2), WARMUP (1s),
# BENCH_DATABASE_URL (SQLite files).
#
# Reported: req/s = all requests of a target / its wrk seconds; p50 = mean
# of its runs; p99 = worst of its runs; CPU = the server process's CPU time
# (user + system) per request, the figure least affected by other load.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_URL=${JOURNAL_REDIS_URL:-}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-1s}
PREFIX="benchfs$RANDOM$RANDOM:"

log() { printf 'fullstack.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
for tool in wrk curl go redis-cli; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	redis_host=${REDIS_URL#redis://}
	redis-cli -h "${redis_host%:*}" -p "${redis_host##*:}" --scan --pattern "${PREFIX}*" 2>/dev/null |
		xargs -r -n 500 redis-cli -h "${redis_host%:*}" -p "${redis_host##*:}" del >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [ -z "$REDIS_URL" ]; then
	command -v redis-server >/dev/null || die "redis-server is not installed"
	rport=$(free_port)
	redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
	REDIS_URL=redis://127.0.0.1:$rport
fi

log "building journal and journal-bare"
go build -o "$dir/journal" ./cmd/journal
(cd bench && go build -o "$dir/journal-bare" ./journal-bare)

declare -A pid
# start_journal NAME PORT [VAR=VALUE...]: a journal instance with high limits.
start_journal() {
	local name=$1 port=$2
	shift 2
	local db=${BENCH_DATABASE_URL:-sqlite:$dir/$name.db}
	env JOURNAL_ADDR="127.0.0.1:$port" JOURNAL_DATABASE_URL="$db" JOURNAL_REDIS_PREFIX="$PREFIX" \
		JOURNAL_RATE_LIMIT_IP=1000000000/1h JOURNAL_RATE_LIMIT_USER=1000000000/1h \
		JOURNAL_RATE_LIMIT_SIGNUP=1000000000/1h JOURNAL_RATE_LIMIT_LOGIN=1000000000/1h \
		JOURNAL_LOG_LEVEL=warn JOURNAL_SHUTDOWN_DRAIN=0s JOURNAL_INSTANCE_ID="bench-$name" "$@" \
		"$dir/journal" >"$dir/$name.log" 2>&1 &
	pids+=($!)
	pid[$name]=$!
	for _ in $(seq 300); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return
		kill -0 "$!" 2>/dev/null || { tail -5 "$dir/$name.log" >&2; die "journal $name exited"; }
		sleep 0.1
	done
	tail -5 "$dir/$name.log" >&2
	die "journal $name not ready within 30s"
}

# setup NAME PORT: creates a user, a token and an entry; prints "TOKEN ID".
setup() {
	local base="http://127.0.0.1:$2" user="bench$RANDOM$RANDOM" tok id
	local creds="{\"username\":\"$user\",\"password\":\"correct horse battery\"}"
	curl -sf -H 'Content-Type: application/json' -d "$creds" "$base/v1/users" >/dev/null || die "$1: signup failed"
	tok=$(curl -sf -H 'Content-Type: application/json' -d "$creds" "$base/v1/tokens" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
	[ -n "$tok" ] || die "$1: login failed"
	id=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $tok" \
		-d '{"title":"hello","body":"a short body of a journal entry"}' "$base/v1/entries" |
		sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
	[ -n "$id" ] || die "$1: create entry failed"
	echo "$tok $id"
}

redis_port=$(free_port)
start_journal redis "$redis_port" JOURNAL_REDIS_URL="$REDIS_URL"
read -r redis_tok redis_id < <(setup redis "$redis_port")
redis_url="http://127.0.0.1:$redis_port/v1/entries/$redis_id"

exact_port=$(free_port)
start_journal exact "$exact_port" JOURNAL_REDIS_URL="$REDIS_URL" JOURNAL_RATE_LIMIT_LEASE=0
read -r exact_tok exact_id < <(setup exact "$exact_port")
exact_url="http://127.0.0.1:$exact_port/v1/entries/$exact_id"

memory_port=$(free_port)
start_journal memory "$memory_port" JOURNAL_REDIS_URL=
read -r memory_tok memory_id < <(setup memory "$memory_port")
memory_url="http://127.0.0.1:$memory_port/v1/entries/$memory_id"

# The bare server replays the Redis instance's cached response: same status,
# headers and body bytes.
curl -sf -i -H "Authorization: Bearer $redis_tok" "$redis_url" >/dev/null
curl -sf -i -H "Authorization: Bearer $redis_tok" "$redis_url" >"$dir/get.http" || die "GET failed"
bare_port=$(free_port)
"$dir/journal-bare" -addr "127.0.0.1:$bare_port" -response "$dir/get.http" 2>"$dir/bare.log" &
pids+=($!)
pid[bare]=$!
bare_url="http://127.0.0.1:$bare_port/v1/entries/$redis_id"
for _ in $(seq 100); do curl -sf -o /dev/null "$bare_url" && break; sleep 0.1; done
cmp <(curl -s "$bare_url") <(curl -s -H "Authorization: Bearer $redis_tok" "$redis_url") >/dev/null ||
	die "bare and journal bodies differ"
hdrs() { curl -s -o /dev/null -D - "$@" | grep -c ':'; }
log "headers: bare $(hdrs "$bare_url"), journal $(hdrs -H "Authorization: Bearer $redis_tok" "$redis_url")"

# measure NAME URL TOKEN: one wrk run after a warm-up, added to the totals of
# NAME: requests, seconds, server CPU ticks (user + system, from /proc), the
# sum of p50s and the worst p99.
declare -A reqs secs tcks p50sum p99max runs cmds
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_hostport=${REDIS_URL#redis://}
commands() { redis-cli -h "${redis_hostport%:*}" -p "${redis_hostport##*:}" info stats | awk -F: '/^total_commands_processed:/ {print $2+0}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
measure() {
	local name=$1 url=$2 tok=$3 out t0 t1 c0 c1 n sec p50 p99
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Authorization: Bearer $tok" "$url" >/dev/null
	t0=$(ticks "${pid[$name]}")
	c0=$(commands)
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $tok" "$url")
	c1=$(commands)
	t1=$(ticks "${pid[$name]}")
	echo "$out" >>"$dir/wrk-$name.txt"
	if grep -q 'Non-2xx' <<<"$out"; then echo "$out" >&2; die "$name: non-2xx responses"; fi
	read -r n sec < <(awk '/requests in/ {sub(/s,$/, "", $4); print $1, $4}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
	p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
	reqs[$name]=$((${reqs[$name]:-0} + n))
	secs[$name]=$(awk -v a="${secs[$name]:-0}" -v b="$sec" 'BEGIN {print a + b}')
	tcks[$name]=$((${tcks[$name]:-0} + t1 - t0))
	cmds[$name]=$((${cmds[$name]:-0} + c1 - c0)) # every command Redis ran, those of scripts too
	p50sum[$name]=$(awk -v a="${p50sum[$name]:-0}" -v b="$p50" 'BEGIN {print a + b}')
	p99max[$name]=$(awk -v a="${p99max[$name]:-0}" -v b="$p99" 'BEGIN {print (b > a) ? b : a}')
	runs[$name]=$((${runs[$name]:-0} + 1))
	log "$name: $(awk -v n="$n" -v s="$sec" 'BEGIN {printf "%.0f", n / s}') req/s, p50 $p50 ms, p99 $p99 ms, load $(cut -d' ' -f1 /proc/loadavg)"
}

# summarize NAME: sets rps, p50, p99 (mean p50, worst p99), cpu (µs/req) and
# rt (Redis commands per request).
declare -A rps p50 p99 cpu rt
summarize() {
	local name=$1
	rt[$name]=$(awk -v c="${cmds[$name]}" -v n="${reqs[$name]}" 'BEGIN {printf "%.3f", c / n}')
	rps[$name]=$(awk -v n="${reqs[$name]}" -v s="${secs[$name]}" 'BEGIN {printf "%.0f", n / s}')
	p50[$name]=$(awk -v a="${p50sum[$name]}" -v k="${runs[$name]}" 'BEGIN {printf "%.2f", a / k}')
	p99[$name]=${p99max[$name]}
	cpu[$name]=$(awk -v t="${tcks[$name]}" -v hz="$hz" -v n="${reqs[$name]}" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')
}

# paced NAME URL TOKEN RATE: journal-bare pace; sets prate, pp50, pp99.
declare -A prate pp50 pp99
paced() {
	local name=$1 out failed
	out=$("$dir/journal-bare" pace -url "$2" -rate "$4" -duration "$DURATION" -c "$CONNS" -H "Authorization: Bearer $3")
	log "$name: $out"
	failed=$(sed -n 's/.* failed \([0-9]*\),.*/\1/p' <<<"$out")
	[ "$failed" = 0 ] || die "$name paced run: $failed failed requests"
	prate[$name]=$(sed -n 's/.*(\([0-9]*\)\/s achieved).*/\1/p' <<<"$out")
	pp50[$name]=$(sed -n 's/.* p50 \([0-9.]*\)ms.*/\1/p' <<<"$out")
	pp99[$name]=$(sed -n 's/.* p99 \([0-9.]*\)ms.*/\1/p' <<<"$out")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $load_before; $ROUNDS rounds of wrk -t$THREADS -c$CONNS -d$DURATION --latency, targets interleaved"
for _ in $(seq "$ROUNDS"); do
	measure bare "$bare_url" "$redis_tok"
	measure redis "$redis_url" "$redis_tok"
	measure exact "$exact_url" "$exact_tok"
	measure memory "$memory_url" "$memory_tok"
done
for name in bare redis exact memory; do summarize "$name"; done

half=$((rps[redis] / 2))
log "paced runs at $half req/s (half of the Redis-backend peak): journal, then bare as the control"
paced redis "$redis_url" "$redis_tok" "$half"
paced bare "$bare_url" "$redis_tok" "$half"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100*a/b}'; }
row() { printf '%-36s %8s %8s %8s %8s %12s %14s\n' "$@"; }
echo
echo "load average: before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; database ${BENCH_DATABASE_URL:-SQLite}"
echo "$ROUNDS x wrk -t$THREADS -c$CONNS -d$DURATION --latency per target; paced: journal-bare pace -c $CONNS -duration $DURATION"
row "GET /v1/entries/{id}" "req/s" "vs bare" "p50 ms" "p99 ms" "CPU us/req" "Redis cmd/req"
row "bare net/http (same bytes)" "${rps[bare]}" "100%" "${p50[bare]}" "${p99[bare]}" "${cpu[bare]}" "-"
row "journal, Redis backends, leases" "${rps[redis]}" "$(ratio "${rps[redis]}" "${rps[bare]}")" "${p50[redis]}" "${p99[redis]}" "${cpu[redis]}" "${rt[redis]}"
row "journal, Redis backends, exact" "${rps[exact]}" "$(ratio "${rps[exact]}" "${rps[bare]}")" "${p50[exact]}" "${p99[exact]}" "${cpu[exact]}" "${rt[exact]}"
row "journal, memory backends" "${rps[memory]}" "$(ratio "${rps[memory]}" "${rps[bare]}")" "${p50[memory]}" "${p99[memory]}" "${cpu[memory]}" "-"
row "journal, Redis, paced at half peak" "${prate[redis]}" "-" "${pp50[redis]}" "${pp99[redis]}" "-" "-"
row "bare, paced at the same rate" "${prate[bare]}" "-" "${pp50[bare]}" "${pp99[bare]}" "-" "-"
echo
echo "goals (docs/design.md, Numbers): Redis backends with leases >= 45% of bare: $(awk -v a="${rps[redis]}" -v b="${rps[bare]}" 'BEGIN {print (a >= 0.45*b) ? "met" : "NOT met"}')," \
	"< 0.1 Redis round trips per request: $(awk -v r="${rt[redis]}" 'BEGIN {print (r < 0.1) ? "met" : "NOT met"}');" \
	"exact mode >= 40%: $(awk -v a="${rps[exact]}" -v b="${rps[bare]}" 'BEGIN {print (a >= 0.4*b) ? "met" : "NOT met"}');" \
	"p99 at half peak < 5 ms: $(awk -v p="${pp99[redis]}" 'BEGIN {print (p < 5) ? "met" : "NOT met"}')"
