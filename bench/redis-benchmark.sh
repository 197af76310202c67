#!/bin/sh
# redis-benchmark.sh: the ceiling of one Redis running the journal's decision
# script: redis-benchmark sends EVALSHA of ratelimit/redislimit/decide.lua for
# one GCRA policy over 10,000 random keys, with 64 clients, without and with
# pipelining (-P 16). Usage: ./redis-benchmark.sh [host] [port] [requests]
set -eu
host=${1:-127.0.0.1}
port=${2:-6379}
n=${3:-200000}
here=$(dirname "$0")
sha=$(redis-cli -h "$host" -p "$port" SCRIPT LOAD "$(cat "$here/../ratelimit/redislimit/decide.lua")")
# One GCRA policy of 2^30 per hour: emission interval 4us, tau 2^30*4us.
# Arguments: "" (use Redis TIME), 1 decision, 1 spec (alg g, T, tau, cost 1, not shadow),
# then the decision's header: decide with spec 1.
for p in 1 16; do
  echo "# -P $p"
  redis-benchmark -h "$host" -p "$port" -n "$n" -c 64 -P "$p" -r 10000 -q \
    EVALSHA "$sha" 1 'bench:rb:rl:{ip:__rand_int__}:ip' '' 1 1 g 4 4294967296 1 0 1 |
    tr '\r' '\n' | grep 'requests per second'
done
