#!/usr/bin/env bash
# Two variants of examples/load.rs compared with an external load tool: wrk drives
# `load -- serve` (one server process, all routes), the two paths alternated round by
# round (A B, then B A, ...) so they share the machine's drift. Prints each round's
# requests per second, its A/B ratio, and the median ratio.
#
#   bash benches/wrk.sh [ROUNDS] [SECONDS] [CONNECTIONS] [PATH_A] [PATH_B]
#
# Defaults: 10 rounds of 3 s, 4 connections, /with-after against /layer-spawn (a
# hand-written tokio::spawn under the same AfterLayer). wrk is installed from
# Debian's package when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10}
seconds=${2:-3}
connections=${3:-4}
a=${4:-/with-after}
b=${5:-/layer-spawn}

if ! command -v wrk >/dev/null; then
    echo "wrk: installing Debian's package" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get install -y -qq wrk >&2 || { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq wrk >&2; }
fi

cargo build -q --release --no-default-features --example load
log=$(mktemp)
target/release/examples/load serve >"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; cat "$log" | tail -n +2; rm -f "$log"' EXIT
for _ in $(seq 100); do
    grep -q '^listening on ' "$log" && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$log")
[ -n "$url" ] || { echo "the server did not start" >&2; exit 1; }

# Requests per second wrk reports for `path`.
rate() {
    wrk -t1 -c"$connections" -d"${seconds}s" "$url$1" | awk '/^Requests\/sec:/ { print $2 }'
}

echo "wrk -t1 -c$connections -d${seconds}s, $rounds rounds: $a against $b"
rate "$a" >/dev/null # warm-up
rate "$b" >/dev/null
ratios=()
for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then
        ra=$(rate "$a")
        rb=$(rate "$b")
    else
        rb=$(rate "$b")
        ra=$(rate "$a")
    fi
    ratio=$(awk -v x="$ra" -v y="$rb" 'BEGIN { printf "%.3f", x / y }')
    ratios+=("$ratio")
    echo "round $round: $a $ra req/s, $b $rb req/s, ratio $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
    m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "median ratio %.3f (min %s, max %s)\n", m, r[1], r[NR]
}'
