#!/usr/bin/env bash
# cluster.sh runs N journal instances on loopback behind nginx (docs/design.md,
# "Scale-out"), against the Redis and PostgreSQL named by JOURNAL_REDIS_URL and
# JOURNAL_DATABASE_URL.
#
# Usage: deploy/cluster.sh up|down|rolling-restart|status|start I
#
#   up               build the service (or use JOURNAL_BIN), start INSTANCES
#                    instances and nginx, return 0 when all are ready; after
#                    READY_TIMEOUT seconds (60) print the failing log's tail,
#                    stop what it started and exit 1. Exit 1 if already running.
#   down             stop nginx and every instance started from RUN_DIR and wait
#                    for them to exit; exit 0 when nothing runs.
#   rolling-restart  restart the instances one at a time without failing a
#                    request: take the instance out of nginx (mark it down,
#                    reload, wait until no nginx worker can still send it
#                    anything), SIGTERM it, wait, start it, wait until ready,
#                    put it back, reload.
#   status           print each process and whether it is ready; exit 0 when
#                    everything runs and is ready, 3 otherwise.
#   start I          start instance I (0..N-1) when it does not run (after a
#                    crash) and wait until it is ready; nginx sends it
#                    requests again once its failure timeout passes.
#
# Environment (defaults in parentheses):
#   INSTANCES (3)            number of instances; instance i = 0..N-1
#   LB_ADDR (127.0.0.1:8080) address nginx listens on
#   BASE_PORT (8081)         instance i listens on 127.0.0.1:BASE_PORT+i
#   RUN_DIR (./.cluster)     pids, logs, generated nginx.conf, the binary
#   JOURNAL_BIN              journal binary to run instead of building one
#   NGINX_BIN (nginx on PATH, else /usr/sbin/nginx)
#                            (not NGINX: nginx itself reads that variable
#                            as the list of inherited sockets of an upgrade)
#   READY_TIMEOUT (60)       seconds `up` waits for readiness
#   JOURNAL_*                passed to every instance, except JOURNAL_ADDR and
#                            JOURNAL_INSTANCE_ID (set per instance: i0, i1, ...);
#                            JOURNAL_TRUSTED_PROXIES defaults to 127.0.0.1/32,
#                            nginx, which replaces X-Forwarded-For with the
#                            address it saw and does not proxy /metrics (read
#                            it on each instance). JOURNAL_OPS_ADDR is refused:
#                            the instances would share it, and cluster.sh reads
#                            /readyz on each instance's port.
#
# `up` records the settings in RUN_DIR/cluster.env; `down`, `status` and
# `rolling-restart` read them from there, so they act on what `up` started.
set -euo pipefail

prog=cluster.sh
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/.." && pwd)

cmd=${1:-}
case "$cmd" in
up | down | rolling-restart | status | start) ;;
-h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "usage: cluster.sh up|down|rolling-restart|status|start I" ;;
esac

RUN_DIR=${RUN_DIR:-./.cluster}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
state=$RUN_DIR/cluster.env

# Settings of a running cluster come from cluster.env, so that `down` and
# `rolling-restart` act on what `up` started whatever the caller's environment.
if [ "$cmd" != up ] && [ -f "$state" ]; then
	# shellcheck source=/dev/null
	. "$state"
fi

# nginx takes $NGINX for inherited listening sockets (binary upgrade).
unset NGINX

INSTANCES=${INSTANCES:-3}
LB_ADDR=${LB_ADDR:-127.0.0.1:8080}
BASE_PORT=${BASE_PORT:-8081}
READY_TIMEOUT=${READY_TIMEOUT:-60}
if [ -z "${NGINX_BIN:-}" ]; then
	NGINX_BIN=$(command -v nginx || true)
	[ -n "$NGINX_BIN" ] || NGINX_BIN=/usr/sbin/nginx
fi

case "$INSTANCES" in '' | *[!0-9]*) die "INSTANCES=$INSTANCES is not a number" ;; esac
case "$BASE_PORT" in '' | *[!0-9]*) die "BASE_PORT=$BASE_PORT is not a number" ;; esac
case "$READY_TIMEOUT" in '' | *[!0-9]*) die "READY_TIMEOUT=$READY_TIMEOUT is not a number" ;; esac
[ "$INSTANCES" -ge 1 ] || die "INSTANCES must be at least 1"

port_of() { echo $((BASE_PORT + $1)); }
pidfile_of() { echo "$RUN_DIR/instance-$1.pid"; }
log_of() { echo "$RUN_DIR/logs/instance-$1.log"; }
nginx_pidfile=$RUN_DIR/nginx.pid
nginx_conf=$RUN_DIR/nginx.conf

# alive PID: the process exists and is not a zombie (an orphan whose parent
# does not reap it still answers kill -0).
alive() {
	local pid=$1 st
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 0
	[ "$st" != Z ]
}

# pid_in FILE: the pid recorded in FILE if that process is alive, else nothing.
pid_in() {
	local pid
	[ -f "$1" ] || return 0
	pid=$(tr -dc 0-9 <"$1")
	if alive "$pid"; then echo "$pid"; fi
}

# wait_exit PID SECONDS: wait until PID has exited; 1 on timeout.
wait_exit() {
	local pid=$1 deadline=$((SECONDS + $2))
	while alive "$pid"; do
		[ $SECONDS -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# http_ok URL: 0 when URL answers 2xx within a second.
http_ok() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }

tail_log() {
	printf '%s: last lines of %s:\n' "$prog" "$1" >&2
	tail -n 30 "$1" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# render DOWN_INDEX: write nginx.conf from the template; instance DOWN_INDEX
# (or none when -1) is marked down.
render() {
	local down=$1 i servers='' temp='' user='' key dir
	for ((i = 0; i < INSTANCES; i++)); do
		servers+="        server 127.0.0.1:$(port_of "$i") max_fails=1 fail_timeout=2s"
		if [ "$i" -eq "$down" ]; then servers+=" down"; fi
		servers+=";"$'\n'
	done
	# The temp paths compiled into this nginx point under /var/lib/nginx;
	# move each one it knows into RUN_DIR (an unknown directive is an error).
	for key in client_body proxy fastcgi scgi uwsgi; do
		if "$NGINX_BIN" -V 2>&1 | grep -q -- "--http-${key//_/-}-temp-path"; then
			dir=$RUN_DIR/tmp/$key
			mkdir -p "$dir"
			temp+="    ${key}_temp_path $dir;"$'\n'
		fi
	done
	# A master running as root starts its workers as "nobody", who cannot
	# write to a private RUN_DIR: keep them as the invoking user.
	if [ "$(id -u)" = 0 ]; then user="user $(id -un) $(id -gn);"; fi
	awk -v servers="${servers%$'\n'}" -v temp="${temp%$'\n'}" -v user="$user" \
		-v run_dir="$RUN_DIR" -v lb="$LB_ADDR" '
		$0 == "@SERVERS@" { print servers; next }
		$0 == "@TEMP_PATHS@" { print temp; next }
		$0 == "@USER@" { print user; next }
		{ gsub(/@RUN_DIR@/, run_dir); gsub(/@LB_ADDR@/, lb); print }
	' "$script_dir/nginx.conf.tmpl" >"$nginx_conf.new"
	mv "$nginx_conf.new" "$nginx_conf"
}

nginx_cmd() { "$NGINX_BIN" -c "$nginx_conf" -p "$RUN_DIR" -e "$RUN_DIR/logs/nginx-error.log" "$@"; }

# reload: check the new config, signal the master, and wait until the new
# generation of workers is up (the old one may still be draining).
reload() {
	local out
	out=$(nginx_cmd -t 2>&1) || { printf '%s\n' "$out" >&2; die "generated $nginx_conf is invalid"; }
	nginx_cmd -s reload
}

# old_workers NGINX_PID: how many workers of this master are shutting down.
old_workers() {
	ps -o pid=,args= --ppid "$1" 2>/dev/null | grep -c 'worker process is shutting down' || true
}

# start_instance I: start instance I in its own session, output to its log.
start_instance() {
	local i=$1 log
	log=$(log_of "$i")
	printf '\n==== %s start instance %s\n' "$(date -u +%FT%TZ)" "$i" >>"$log"
	JOURNAL_ADDR=127.0.0.1:$(port_of "$i") JOURNAL_INSTANCE_ID=i$i \
		setsid "$JOURNAL_BIN" </dev/null >>"$log" 2>&1 &
	echo $! >"$(pidfile_of "$i")"
}

# wait_ready DEADLINE I...: wait until every instance I answers /readyz 200
# (and nginx, when I is "lb"); on timeout or an early exit print the log's
# tail and return 1.
wait_ready() {
	local deadline=$1 i pending
	shift
	pending=("$@")
	while [ ${#pending[@]} -gt 0 ]; do
		local next=()
		for i in "${pending[@]}"; do
			if [ "$i" = lb ]; then
				http_ok "http://$LB_ADDR/readyz" || next+=("$i")
				continue
			fi
			if [ -z "$(pid_in "$(pidfile_of "$i")")" ]; then
				say "instance $i (port $(port_of "$i")) exited during start-up"
				tail_log "$(log_of "$i")"
				return 1
			fi
			http_ok "http://127.0.0.1:$(port_of "$i")/readyz" || next+=("$i")
		done
		pending=("${next[@]+"${next[@]}"}")
		[ ${#pending[@]} -gt 0 ] || break
		if [ $SECONDS -ge "$deadline" ]; then
			i=${pending[0]}
			if [ "$i" = lb ]; then
				say "nginx at $LB_ADDR not ready after ${READY_TIMEOUT}s"
				tail_log "$RUN_DIR/logs/nginx-error.log"
			else
				say "instance $i (http://127.0.0.1:$(port_of "$i")/readyz) not ready after ${READY_TIMEOUT}s"
				tail_log "$(log_of "$i")"
			fi
			return 1
		fi
		sleep 0.1
	done
}

# stop_pid PID WHAT: SIGTERM, wait (the service drains for
# JOURNAL_SHUTDOWN_DRAIN + in-flight), SIGKILL after 60 s.
stop_pid() {
	local pid=$1 what=$2
	kill -TERM "$pid" 2>/dev/null || return 0
	if ! wait_exit "$pid" 60; then
		say "$what (pid $pid) did not exit 60s after SIGTERM; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		wait_exit "$pid" 10 || say "$what (pid $pid) survived SIGKILL"
	fi
}

running_any() {
	local i
	[ -n "$(pid_in "$nginx_pidfile")" ] && return 0
	for f in "$RUN_DIR"/instance-*.pid; do
		[ -e "$f" ] || continue
		[ -n "$(pid_in "$f")" ] && return 0
	done
	return 1
}

do_down() {
	local pid f stopped=0
	pid=$(pid_in "$nginx_pidfile")
	if [ -n "$pid" ]; then
		# QUIT: graceful, workers finish their requests.
		kill -QUIT "$pid" 2>/dev/null || true
		wait_exit "$pid" 30 || { kill -KILL "$pid" 2>/dev/null || true; wait_exit "$pid" 10 || true; }
		stopped=$((stopped + 1))
	fi
	rm -f "$nginx_pidfile"
	local pids=()
	for f in "$RUN_DIR"/instance-*.pid; do
		[ -e "$f" ] || continue
		pid=$(pid_in "$f")
		if [ -n "$pid" ]; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	# SIGTERM all at once (each drains in parallel), then wait for each.
	for pid in "${pids[@]+"${pids[@]}"}"; do
		stop_pid "$pid" "instance"
		stopped=$((stopped + 1))
	done
	rm -f "$RUN_DIR"/instance-*.pid
	if [ "$stopped" -eq 0 ]; then say "nothing running in $RUN_DIR"; else say "stopped $stopped processes"; fi
}

do_up() {
	if running_any; then
		die "already running in $RUN_DIR (run 'cluster.sh down' first)"
	fi
	command -v curl >/dev/null || die "curl is required (apt-get install curl)"
	[ -x "$NGINX_BIN" ] || die "nginx not found (apt-get install nginx-light, or set NGINX_BIN)"
	if [ "$INSTANCES" -gt 1 ]; then
		case "${JOURNAL_DATABASE_URL:-}" in
		postgres://* | postgresql://*) ;;
		*) die "INSTANCES=$INSTANCES needs JOURNAL_DATABASE_URL=postgres://... (got '${JOURNAL_DATABASE_URL:-}')" ;;
		esac
		[ -n "${JOURNAL_REDIS_URL:-}" ] || die "INSTANCES=$INSTANCES needs JOURNAL_REDIS_URL (shared limits and cache)"
	fi
	[ -z "${JOURNAL_OPS_ADDR:-}" ] || die "JOURNAL_OPS_ADDR is not supported here: every instance would bind it, and cluster.sh polls /readyz on each instance's port; unset it"
	export JOURNAL_TRUSTED_PROXIES=${JOURNAL_TRUSTED_PROXIES:-127.0.0.1/32}
	mkdir -p "$RUN_DIR/logs" "$RUN_DIR/bin"
	if [ -z "${JOURNAL_BIN:-}" ]; then
		JOURNAL_BIN=$RUN_DIR/bin/journal
		say "building $JOURNAL_BIN"
		(cd "$repo_dir" && go build -o "$JOURNAL_BIN" ./cmd/journal) || die "go build ./cmd/journal failed"
	fi
	[ -x "$JOURNAL_BIN" ] || die "JOURNAL_BIN=$JOURNAL_BIN is not executable"
	JOURNAL_BIN=$(cd "$(dirname "$JOURNAL_BIN")" && pwd)/$(basename "$JOURNAL_BIN")

	# Record the settings (and every JOURNAL_* of the caller) for the
	# other commands.
	{
		printf '# written by cluster.sh up at %s\n' "$(date -u +%FT%TZ)"
		printf 'INSTANCES=%q\nLB_ADDR=%q\nBASE_PORT=%q\nNGINX_BIN=%q\nJOURNAL_BIN=%q\nREADY_TIMEOUT=%q\n' \
			"$INSTANCES" "$LB_ADDR" "$BASE_PORT" "$NGINX_BIN" "$JOURNAL_BIN" "$READY_TIMEOUT"
		local v
		for v in $(compgen -e | grep '^JOURNAL_' || true); do
			case "$v" in JOURNAL_ADDR | JOURNAL_INSTANCE_ID | JOURNAL_BIN) continue ;; esac
			printf 'export %s=%q\n' "$v" "${!v}"
		done
	} >"$state.new"
	mv "$state.new" "$state"
	unset JOURNAL_ADDR JOURNAL_INSTANCE_ID

	local deadline=$((SECONDS + READY_TIMEOUT)) i
	for ((i = 0; i < INSTANCES; i++)); do start_instance "$i"; done
	render -1
	local out
	out=$(nginx_cmd -t 2>&1) || { printf '%s\n' "$out" >&2; do_down >/dev/null 2>&1; die "generated $nginx_conf is invalid"; }
	if ! nginx_cmd </dev/null >>"$RUN_DIR/logs/nginx-error.log" 2>&1; then
		tail_log "$RUN_DIR/logs/nginx-error.log"
		do_down >/dev/null 2>&1
		die "nginx did not start"
	fi
	local all=()
	for ((i = 0; i < INSTANCES; i++)); do all+=("$i"); done
	all+=(lb)
	if ! wait_ready "$deadline" "${all[@]}"; then
		do_down >/dev/null 2>&1 || true
		die "up failed; stopped what it started"
	fi
	say "$INSTANCES instances ready on 127.0.0.1:$BASE_PORT..$((BASE_PORT + INSTANCES - 1)) behind nginx at http://$LB_ADDR (logs in $RUN_DIR/logs)"
}

do_rolling_restart() {
	local ngx i pid t
	ngx=$(pid_in "$nginx_pidfile")
	[ -n "$ngx" ] || die "nginx is not running in $RUN_DIR (run 'cluster.sh up' first)"
	for ((i = 0; i < INSTANCES; i++)); do
		pid=$(pid_in "$(pidfile_of "$i")")
		say "instance $i: taking it out of nginx"
		render "$i"
		reload
		# Give the master a moment to start the new workers, then wait
		# until every old worker (which may still hold requests or idle
		# keep-alive connections to this instance) has exited.
		sleep 0.3
		t=$((SECONDS + 60))
		while [ "$(old_workers "$ngx")" -gt 0 ]; do
			[ $SECONDS -lt $t ] || die "old nginx workers still running after 60s"
			sleep 0.05
		done
		sleep 0.2
		if [ -n "$pid" ]; then
			say "instance $i: stopping pid $pid"
			stop_pid "$pid" "instance $i"
		fi
		start_instance "$i"
		wait_ready $((SECONDS + READY_TIMEOUT)) "$i" || die "instance $i did not come back; it stays out of nginx"
		say "instance $i: ready, putting it back"
		render -1
		reload
		sleep 0.3
	done
	say "rolling restart of $INSTANCES instances done"
}

do_start() {
	local i=${1:-}
	case "$i" in '' | *[!0-9]*) die "start: want an instance number, got '$i'" ;; esac
	[ "$i" -lt "$INSTANCES" ] || die "start: instance $i: there are $INSTANCES instances"
	[ -f "$state" ] || die "nothing was started in $RUN_DIR (run 'cluster.sh up' first)"
	[ -z "$(pid_in "$(pidfile_of "$i")")" ] || die "instance $i already runs"
	start_instance "$i"
	wait_ready $((SECONDS + READY_TIMEOUT)) "$i" || die "instance $i did not become ready"
	say "instance $i ready"
}

do_status() {
	local ok=0 i pid st
	pid=$(pid_in "$nginx_pidfile")
	if [ -n "$pid" ] && http_ok "http://$LB_ADDR/readyz"; then st=ready; elif [ -n "$pid" ]; then st=unready; ok=3; else st=stopped; ok=3; fi
	printf 'nginx       %-8s %-7s http://%s\n' "${pid:--}" "$st" "$LB_ADDR"
	for ((i = 0; i < INSTANCES; i++)); do
		pid=$(pid_in "$(pidfile_of "$i")")
		if [ -n "$pid" ] && http_ok "http://127.0.0.1:$(port_of "$i")/readyz"; then st=ready; elif [ -n "$pid" ]; then st=unready; ok=3; else st=stopped; ok=3; fi
		printf 'instance %-2s %-8s %-7s http://127.0.0.1:%s\n' "$i" "${pid:--}" "$st" "$(port_of "$i")"
	done
	return $ok
}

case "$cmd" in
up) do_up ;;
down) do_down ;;
rolling-restart) do_rolling_restart ;;
status) do_status ;;
start) do_start "${2:-}" ;;
esac
