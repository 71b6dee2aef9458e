#!/usr/bin/env bash
# Strata's performance baseline (issue 8): this machine's ceilings, the `strata bench`
# scenarios (a)-(f) against a freshly started broker, the same sizes against NATS
# JetStream, and one table. Run from the repository root:
#
#   benches/run-baseline.sh                                # 2 GiB per scenario
#   STRATA_BASELINE_BYTES=268435456 benches/run-baseline.sh  # a quick 256 MiB run
#
# Environment (all optional):
#   STRATA_BASELINE_BYTES         bytes of values per throughput scenario [2147483648]
#   STRATA_BASELINE_E2E_SECONDS   length of scenario (e) at its rate [10]
#   STRATA_BASELINE_RUNS          runs of each Strata scenario; the table shows the
#                                 median run and lists them all [3]
#   STRATA_BASELINE_DIR           parent of the temporary data dirs [${TMPDIR:-/tmp}];
#                                 the dd ceilings write there too (same filesystem)
#   STRATA_BASELINE_PORT          Strata's port; metrics on PORT+1 [19400]
#   STRATA_BASELINE_NATS_PORT     NATS client port [14222]
#   STRATA_BASELINE_IPERF_PORT    iperf3 port [15201]
#   STRATA_BASELINE_SKIP_NATS     1 skips the NATS runs
#   STRATA_BASELINE_NATS_ACKS_PENDING  publish acks a NATS producer awaits at once [256]
#
# Each scenario starts after a `sync` and 2 s of quiet (settle), so it does not share
# the disk and the CPUs with the writeback of the scenarios before it. Strata's scenarios
# run STRATA_BASELINE_RUNS times, each on a topic of its own that is deleted after it
# (after (d) for (a)'s), as single runs on this shared VM vary by a third or more; NATS's
# run once, at 3-30x less than Strata. After NATS, a fresh Strata broker runs (e) again
# at NATS's (e) rate, (e2), so the two latencies also compare at the same load.
#
# Every process it starts runs on 127.0.0.1 only, is recorded by PID and is stopped by
# PID on exit; every client run is bounded by `timeout`. The temp dir is removed on exit;
# the table goes to stdout, progress and each run's raw JSON to stderr.
set -euo pipefail

BYTES=${STRATA_BASELINE_BYTES:-2147483648}
E2E_SECONDS=${STRATA_BASELINE_E2E_SECONDS:-10}
RUNS=${STRATA_BASELINE_RUNS:-3}
PARENT=${STRATA_BASELINE_DIR:-${TMPDIR:-/tmp}}
STRATA_PORT=${STRATA_BASELINE_PORT:-19400}
NATS_PORT=${STRATA_BASELINE_NATS_PORT:-14222}
IPERF_PORT=${STRATA_BASELINE_IPERF_PORT:-15201}
SKIP_NATS=${STRATA_BASELINE_SKIP_NATS:-0}
NATS_ACKS_PENDING=${STRATA_BASELINE_NATS_ACKS_PENDING:-256}
# A bound on any one client run, so a hang cannot keep the script forever.
RUN_SECONDS_MAX=900
# Seconds between freeing memory and a write ceiling pass; see ceiling_disk.
FRESH_MEMORY_WAIT=5
# Seconds of quiet after the `sync` before each scenario (see settle).
SETTLE_SECONDS=2

# Producer settings shared by the throughput scenarios (the client's defaults, spelled
# out so the table does not depend on them).
BATCH_BYTES=1048576
LINGER_MS=5
# Scenario (e): no linger, so latency is not the producer waiting to fill a batch.
E2E_LINGER_MS=0

MEBIBYTE=1048576
RECORDS_1K=$((BYTES / 1024))
RECORDS_100=$((BYTES / 100))
DD_COUNT=$((BYTES / MEBIBYTE))

log() { printf '[baseline %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PIDs of the servers this script started, stopped by cleanup.
PIDS=()
WORK=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT

# Stops one process we started: TERM, up to 10 s, then KILL. It leaves PIDS, so that
# cleanup never signals a later process that got the same PID.
stop_pid() {
    local pid=$1 waited=0 kept=() other
    for other in "${PIDS[@]}"; do
        [[ "$other" == "$pid" ]] || kept+=("$other")
    done
    PIDS=("${kept[@]}")
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop after TERM; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Waits up to 30 s for a line matching $2 in log file $1 from process $3.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 waited=0
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "pid $pid exited early"; }
        ((waited < 300)) || die "no '$pattern' in $file after 30 s"
        sleep 0.1
        waited=$((waited + 1))
    done
}

install_tools() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v nats-server >/dev/null || missing+=(nats-server)
    command -v jq >/dev/null || missing+=(jq)
    command -v dd >/dev/null || missing+=(coreutils)
    if ((${#missing[@]} > 0)); then
        log "installing ${missing[*]} with apt-get"
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
    fi
}

build() {
    log "building release binaries"
    cargo build --release --bin strata-broker --bin strata >&2
    cargo build --release -p strata-benches --bin memcpy >&2
    local target
    target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    if [[ "$SKIP_NATS" != 1 ]]; then
        # Its own workspace (see its Cargo.toml); built into the same target directory.
        cargo build --release --manifest-path benches/nats-bench/Cargo.toml --target-dir "$target" --bin nats-bench >&2
    fi
    BIN=$target/release
}

# --- ceilings ---------------------------------------------------------------------

# Loopback TCP, one stream for 5 s: iperf3 server and client on 127.0.0.1.
ceiling_loopback() {
    log "ceiling: loopback TCP (iperf3, 1 stream, 5 s)"
    iperf3 --server --bind 127.0.0.1 --port "$IPERF_PORT" --one-off --forceflush >"$WORK/iperf3-server.log" 2>&1 &
    local server=$!
    PIDS+=("$server")
    wait_for_line "$WORK/iperf3-server.log" "listening" "$server"
    timeout 60 iperf3 --client 127.0.0.1 --port "$IPERF_PORT" --time 5 --json >"$WORK/iperf3.json"
    stop_pid "$server"
    LOOPBACK_MBPS=$(jq '.end.sum_received.bits_per_second / 8 / 1e6' "$WORK/iperf3.json")
}

# Sequential write of BYTES into the data dir's filesystem, best of 2 per variant:
#   page cache: dd if=/dev/zero of=F bs=1M count=N            (no fsync)
#   fdatasync : dd if=/dev/zero of=F bs=1M count=N conv=fdatasync  (one fsync at the end)
#   dsync     : dd if=/dev/zero of=F bs=1M count=N oflag=dsync     (an fsync every 1 MiB)
# `sync` runs before each pass so earlier dirty pages do not slow it, then a wait of
# FRESH_MEMORY_WAIT seconds: on a VM that reports free pages to its hypervisor (free page
# reporting; this one reports after about 2 s), memory freed moments ago is still backed
# and several times faster to fill than memory the host must supply again. A broker's log
# always fills new page-cache pages, so without the wait the second pass would reuse the
# first pass's freed pages and measure a regime the broker does not get. The wait does
# not control the regime (the host decides; docs/benchmarks.md#machine), so compare
# Strata with the ceiling of the same run only.
ceiling_disk() {
    local name flags pass seconds best mbps
    for name in pagecache fdatasync dsync; do
        case $name in
            pagecache) flags=() ;;
            fdatasync) flags=(conv=fdatasync) ;;
            dsync) flags=(oflag=dsync) ;;
        esac
        log "ceiling: dd write ${DD_COUNT} MiB ${flags[*]:-(no fsync)}"
        best=""
        for pass in 1 2; do
            sync
            sleep "$FRESH_MEMORY_WAIT"
            seconds=$(LC_ALL=C timeout "$RUN_SECONDS_MAX" dd if=/dev/zero of="$WORK/dd.$pass" \
                bs=1M count="$DD_COUNT" "${flags[@]}" 2>&1 |
                awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) }')
            rm -f -- "$WORK/dd.$pass"
            [[ -n "$seconds" ]] || die "could not read dd's time"
            best=$(awk -v a="${best:-$seconds}" -v b="$seconds" 'BEGIN { print (b < a ? b : a) }')
        done
        mbps=$(awk -v b="$((DD_COUNT * MEBIBYTE))" -v s="$best" 'BEGIN { print b / 1e6 / s }')
        case $name in
            pagecache) DISK_pagecache_MBPS=$mbps ;;
            fdatasync) DISK_fdatasync_MBPS=$mbps ;;
            dsync) DISK_dsync_MBPS=$mbps ;;
        esac
    done
}

ceiling_memcpy() {
    log "ceiling: memcpy (256 MiB, best of 5, one thread)"
    MEMCPY_MBPS=$("$BIN/memcpy" 256 5 | jq .megabytes_per_second)
}

# --- Strata -----------------------------------------------------------------------

start_strata() {
    log "starting strata-broker on 127.0.0.1:$STRATA_PORT, data in $WORK/strata"
    "$BIN/strata-broker" --listen "127.0.0.1:$STRATA_PORT" \
        --metrics-listen "127.0.0.1:$((STRATA_PORT + 1))" \
        --data-dir "$WORK/strata" --log-level warn >"$WORK/strata-broker.log" 2>&1 &
    STRATA_PID=$!
    PIDS+=("$STRATA_PID")
    wait_for_line "$WORK/strata-broker.log" "listening on" "$STRATA_PID"
}

# strata bench ... --output json > $WORK/strata-<scenario>.json, and the command in the log.
# Writes back what the scenarios before wrote, then waits, so a scenario does not run
# alongside the kernel's writeback of an earlier one's gigabytes (the page cache stays
# warm for (d)). Both brokers' scenarios start this way.
settle() {
    sync
    sleep "$SETTLE_SECONDS"
}

# strata_bench SCENARIO RUN ARGS...: one run into $WORK/strata-SCENARIO.RUN.json.
strata_bench() {
    local scenario=$1 run=$2
    shift 2
    settle
    local command=("$BIN/strata" --bootstrap "127.0.0.1:$STRATA_PORT" bench "$@" --output json)
    log "strata ($scenario, run $run of $RUNS): strata bench $*"
    printf '%s\n' "strata bench $*" >"$WORK/strata-$scenario.command"
    timeout "$RUN_SECONDS_MAX" "${command[@]}" >"$WORK/strata-$scenario.$run.json"
    log "strata ($scenario): $(cat "$WORK/strata-$scenario.$run.json")"
}

strata_cli() {
    log "strata: strata $*"
    timeout 60 "$BIN/strata" --bootstrap "127.0.0.1:$STRATA_PORT" "$@" >&2
}

# median_run SCENARIO JQ_KEY: copies the run with the median value of KEY (the lower of
# the two middle ones for an even count) to $WORK/strata-SCENARIO.json, for the table,
# and every run's value, in run order, to $WORK/strata-SCENARIO.runs.
median_run() {
    local scenario=$1 key=$2 run file
    local lines=()
    for run in $(seq "$RUNS"); do
        file="$WORK/strata-$scenario.$run.json"
        lines+=("$(jq -r "$key" "$file") $file")
    done
    printf '%s\n' "${lines[@]}" | awk '{ print $1 }' | paste -sd ' ' >"$WORK/strata-$scenario.runs"
    file=$(printf '%s\n' "${lines[@]}" | sort -g -k1,1 | awk '{ f[NR] = $2 } END { print f[int((NR + 1) / 2)] }')
    cp -- "$file" "$WORK/strata-$scenario.json"
}

run_strata() {
    local common=(--message-bytes 1024 --batch-bytes "$BATCH_BYTES" --linger-ms "$LINGER_MS")
    local run
    for run in $(seq "$RUNS"); do
        strata_bench a "$run" produce --topic "a-1k-$run" --partitions 1 --producers 1 \
            --messages "$RECORDS_1K" "${common[@]}" --acks leader
        strata_bench b "$run" produce --topic "b-100b-$run" --partitions 1 --producers 1 \
            --messages "$RECORDS_100" --message-bytes 100 --batch-bytes "$BATCH_BYTES" \
            --linger-ms "$LINGER_MS" --acks leader
        strata_cli topic delete "b-100b-$run"
        strata_bench c "$run" produce --topic "c-1k-8p-$run" --partitions 8 --producers 4 \
            --messages "$RECORDS_1K" "${common[@]}" --acks leader
        strata_cli topic delete "c-1k-8p-$run"
        strata_bench d "$run" consume --topic "a-1k-$run" --consumers 1 --messages "$RECORDS_1K"
        strata_cli topic delete "a-1k-$run"
    done
    median_run a .megabytes_per_second
    median_run b .records_per_second
    median_run c .megabytes_per_second
    median_run d .megabytes_per_second
    # Half of the median (a).
    E2E_RATE=$(jq '.records_per_second / 2 | floor' "$WORK/strata-a.json")
    for run in $(seq "$RUNS"); do
        strata_bench e "$run" e2e --topic "e-1k-$run" --partitions 1 --producers 1 --consumers 1 \
            --messages "$((E2E_RATE * E2E_SECONDS))" --rate "$E2E_RATE" --message-bytes 1024 \
            --batch-bytes "$BATCH_BYTES" --linger-ms "$E2E_LINGER_MS" --acks leader
        strata_cli topic delete "e-1k-$run"
    done
    median_run e .latency_us_p99
    for run in $(seq "$RUNS"); do
        strata_cli topic create "f-1k-$run" --partitions 1 --config durability=every_batch
        strata_bench f "$run" produce --topic "f-1k-$run" --partitions 1 --producers 1 \
            --messages "$RECORDS_1K" "${common[@]}" --acks all
        strata_cli topic delete "f-1k-$run"
    done
    median_run f .megabytes_per_second
}

# Scenario (e) again at NATS's (e) rate, so the two brokers' latencies compare at the
# same load: (e2), on a broker started again after the NATS runs.
run_strata_at_nats_rate() {
    local run
    for run in $(seq "$RUNS"); do
        strata_bench e2 "$run" e2e --topic "e2-1k-$run" --partitions 1 --producers 1 --consumers 1 \
            --messages "$((NATS_E2E_RATE * E2E_SECONDS))" --rate "$NATS_E2E_RATE" \
            --message-bytes 1024 --batch-bytes "$BATCH_BYTES" --linger-ms "$E2E_LINGER_MS" \
            --acks leader
        strata_cli topic delete "e2-1k-$run"
    done
    median_run e2 .latency_us_p99
}

# --- NATS JetStream ---------------------------------------------------------------

start_nats() {
    log "starting nats-server (JetStream, file store in $WORK/nats) on 127.0.0.1:$NATS_PORT"
    # nats-server 2.9 has no `sync_interval` option: its file store fsyncs on its own
    # 2-minute timer, never per publish. There is no configuration comparable to (f).
    # The store limit is a cap, not an allocation: room for (a)-(c) plus scenario (e),
    # whose size follows its rate and E2E_SECONDS, not BYTES (about 200 MB/s at most here).
    local store_bytes_max=$((BYTES * 8 + E2E_SECONDS * 400 * 1024 * 1024))
    cat >"$WORK/nats.conf" <<EOF
listen: 127.0.0.1:$NATS_PORT
jetstream {
  store_dir: "$WORK/nats"
  max_file_store: $store_bytes_max
}
EOF
    nats-server --config "$WORK/nats.conf" >"$WORK/nats-server.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_for_line "$WORK/nats-server.log" "Server is ready" "$NATS_PID"
}

nats_bench() {
    local scenario=$1 stream=$2
    shift 2
    settle
    log "nats ($scenario): nats-bench --stream $stream $*"
    printf '%s\n' "nats-bench --stream $stream $*" >"$WORK/nats-$scenario.command"
    timeout "$RUN_SECONDS_MAX" "$BIN/nats-bench" --url "nats://127.0.0.1:$NATS_PORT" \
        --stream "$stream" "$@" >"$WORK/nats-$scenario.json"
    log "nats ($scenario): $(cat "$WORK/nats-$scenario.json")"
}

run_nats() {
    local pending=(--acks-pending-max "$NATS_ACKS_PENDING")
    nats_bench a A1K produce --messages "$RECORDS_1K" --message-bytes 1024 \
        --producers 1 --partitions 1 "${pending[@]}"
    nats_bench b B100 produce --messages "$RECORDS_100" --message-bytes 100 \
        --producers 1 --partitions 1 "${pending[@]}"
    nats_bench c C1K8 produce --messages "$RECORDS_1K" --message-bytes 1024 \
        --producers 4 --partitions 8 "${pending[@]}"
    nats_bench d A1K consume --messages "$RECORDS_1K"
    # Half of NATS's own (a), as for Strata: at Strata's rate NATS would fall behind, and
    # both tools stamp a message when it is sent, not when it was due (coordinated
    # omission), so an overloaded run would not show the backlog in its latency.
    NATS_E2E_RATE=$(jq '.records_per_second / 2 | floor' "$WORK/nats-a.json")
    nats_bench e E1K e2e --messages "$((NATS_E2E_RATE * E2E_SECONDS))" --rate "$NATS_E2E_RATE" \
        --message-bytes 1024 --producers 1 --partitions 1 "${pending[@]}"
}

# --- the table --------------------------------------------------------------------

field() { # field FILE JQ_EXPRESSION -> value, or "" when the file is missing
    if [[ -s "$1" ]]; then
        jq -r "$2 // empty" "$1"
    fi
}

# row SCENARIO SETTINGS KIND CEILING_MBPS CEILING_NAME
#   KIND mbps: throughput in MB/s (and records/s); lat: e2e latency percentiles.
row() {
    local scenario=$1 settings=$2 kind=$3 ceiling=$4 ceiling_name=$5
    local s="$WORK/strata-$scenario.json" n="$WORK/nats-$scenario.json"
    if [[ "$scenario" == f ]]; then
        n="$WORK/nats-a.json" # see start_nats: NATS 2.9 cannot fsync per publish
    fi
    if [[ "$scenario" == e2 ]]; then
        n="$WORK/nats-e.json" # the same rate
    fi
    awk -v OFS=' | ' -v scenario="$scenario" -v settings="$settings" -v kind="$kind" \
        -v ceiling="$ceiling" -v ceiling_name="$ceiling_name" -v nats_rate="${NATS_E2E_RATE:-?}" \
        -v s_mbps="$(field "$s" .megabytes_per_second)" \
        -v s_rps="$(field "$s" .records_per_second)" \
        -v s_p50="$(field "$s" .latency_us_p50)" -v s_p99="$(field "$s" .latency_us_p99)" \
        -v s_p999="$(field "$s" .latency_us_p99_9)" \
        -v n_mbps="$(field "$n" .megabytes_per_second)" \
        -v n_rps="$(field "$n" .records_per_second)" \
        -v n_p50="$(field "$n" .latency_us_p50)" -v n_p99="$(field "$n" .latency_us_p99)" \
        -v n_p999="$(field "$n" .latency_us_p99_9)" \
        'function tput(mbps, rps) { return sprintf("%.0f MB/s, %.3f M rec/s", mbps, rps / 1e6) }
         function lat(p50, p99, p999) {
             return sprintf("p50 %.2f / p99 %.2f / p99.9 %.2f ms", p50 / 1e3, p99 / 1e3, p999 / 1e3)
         }
         BEGIN {
             if (kind == "mbps") {
                 strata = s_mbps == "" ? "n/a" : tput(s_mbps, s_rps)
                 limit = sprintf("%.0f MB/s (%s)", ceiling, ceiling_name)
                 fraction = s_mbps == "" ? "n/a" : sprintf("%.0f %%", 100 * s_mbps / ceiling)
                 nats = n_mbps == "" ? "n/a" : tput(n_mbps, n_rps)
                 ratio = (s_mbps == "" || n_mbps == "") ? "n/a" : sprintf("%.2fx", s_mbps / n_mbps)
             } else {
                 strata = s_p99 == "" ? "n/a" : lat(s_p50, s_p99, s_p999)
                 limit = "n/a"; fraction = "n/a"
                 nats = n_p99 == "" ? "n/a" : lat(n_p50, n_p99, n_p999) " at " nats_rate " rec/s"
                 # Latency: NATS p99 over Strata p99, so > 1 means Strata is better.
                 ratio = (s_p99 == "" || n_p99 == "") ? "n/a" : sprintf("%.2fx (p99)", n_p99 / s_p99)
             }
             if (scenario == "f" && nats != "n/a") { nats = nats " (no fsync: NATS 2.9)" }
             print "| " scenario, settings, strata, limit, fraction, nats, ratio " |"
         }'
}

# Where the machine's CPU time went in each Strata run, from `strata bench` itself
# (/proc/stat over the run): the hypervisor's steal freezes broker and load tool alike.
# The e2e send delay is how far the paced producer fell behind its schedule; latency is
# timed from the actual send, so a large delay means the rate was not held.
cpu_table() {
    printf '\n%s\n' '| scenario | machine busy | steal | iowait | strata bench used | send delay p99 / max |'
    printf '%s\n' '|---|---|---|---|---|---|'
    local scenario s
    for scenario in a b c d e e2 f; do
        s="$WORK/strata-$scenario.json"
        [[ -s "$s" ]] || continue
        awk -v scenario="$scenario" \
            -v busy="$(field "$s" .cpu_busy_percent)" -v steal="$(field "$s" .cpu_steal_percent)" \
            -v iowait="$(field "$s" .cpu_iowait_percent)" -v cores="$(field "$s" .bench_cpu_cores)" \
            -v d99="$(field "$s" .send_delay_us_p99)" -v dmax="$(field "$s" .send_delay_us_max)" \
            'function pct(v) { return v == "" ? "n/a" : sprintf("%.0f %%", v) }
             BEGIN {
                 used = cores == "" ? "n/a" : sprintf("%.2f cores", cores)
                 delay = d99 == "" ? "n/a" : sprintf("%.2f / %.2f ms", d99 / 1e3, dmax / 1e3)
                 printf "| %s | %s | %s | %s | %s | %s |\n", scenario, pct(busy), pct(steal), pct(iowait), used, delay
             }'
    done
    local nats_d99 nats_dmax
    nats_d99=$(field "$WORK/nats-e.json" .send_delay_us_p99)
    nats_dmax=$(field "$WORK/nats-e.json" .send_delay_us_max)
    if [[ -n "$nats_d99" ]]; then
        awk -v d99="$nats_d99" -v dmax="$nats_dmax" \
            'BEGIN { printf "\nNATS (e) send delay p99 / max: %.2f / %.2f ms\n", d99 / 1e3, dmax / 1e3 }'
    fi
}

# Every Strata run's figure, in run order; the tables above show the median run's.
runs_line() {
    local scenario unit scale format values parts=()
    for scenario in a b c d e e2 f; do
        [[ -s "$WORK/strata-$scenario.runs" ]] || continue
        case $scenario in
            b) unit="M rec/s" scale=1e-6 format="%.2f" ;;
            e | e2) unit="ms p99" scale=1e-3 format="%.1f" ;;
            *) unit="MB/s" scale=1 format="%.0f" ;;
        esac
        values=$(awk -v scale="$scale" -v format="$format" \
            '{ for (i = 1; i <= NF; i++) printf (i > 1 ? ", " : "") format, $i * scale }' \
            "$WORK/strata-$scenario.runs")
        parts+=("($scenario) $values $unit")
    done
    ((${#parts[@]} > 0)) || return 0
    local joined
    joined=$(printf '%s; ' "${parts[@]}")
    printf '\nStrata, all %s runs (the tables show the median run): %s.\n' "$RUNS" "${joined%; }"
}

print_table() {
    local write_ceiling=$DISK_pagecache_MBPS write_name="dd write, no fsync"
    if awk -v l="$LOOPBACK_MBPS" -v w="$write_ceiling" 'BEGIN { exit !(l < w) }'; then
        write_ceiling=$LOOPBACK_MBPS
        write_name="loopback TCP"
    fi
    local read_ceiling=$LOOPBACK_MBPS read_name="loopback TCP"
    if awk -v l="$LOOPBACK_MBPS" -v m="$MEMCPY_MBPS" 'BEGIN { exit !(m < l) }'; then
        read_ceiling=$MEMCPY_MBPS
        read_name="memcpy"
    fi
    local sync_ceiling=$DISK_dsync_MBPS
    if awk -v l="$LOOPBACK_MBPS" -v w="$sync_ceiling" 'BEGIN { exit !(l < w) }'; then
        sync_ceiling=$LOOPBACK_MBPS
    fi
    local gib
    gib=$(awk -v b="$BYTES" 'BEGIN { printf "%.3g GiB", b / 1073741824 }')
    printf '\n## Strata baseline, %s, %s per scenario\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$gib"
    printf 'Ceilings (MB = 10^6 bytes): loopback TCP %.0f MB/s; dd write of %s: %.0f MB/s no fsync, ' \
        "$LOOPBACK_MBPS" "$gib" "$DISK_pagecache_MBPS"
    printf '%.0f MB/s with one fdatasync, %.0f MB/s with O_DSYNC per 1 MiB; memcpy %.0f MB/s.\n\n' \
        "$DISK_fdatasync_MBPS" "$DISK_dsync_MBPS" "$MEMCPY_MBPS"
    printf '%s\n' '| scenario | settings | Strata | ceiling | fraction of ceiling | NATS JetStream | Strata/NATS |'
    printf '%s\n' '|---|---|---|---|---|---|---|'
    local batching="batch ${BATCH_BYTES} B, linger ${LINGER_MS} ms"
    row a "1 producer, 1 partition, 1 KiB, acks=leader, durability=never, $batching" \
        mbps "$write_ceiling" "$write_name"
    row b "same as (a), 100 B records" mbps "$write_ceiling" "$write_name"
    row c "4 producers, 8 partitions, 1 KiB, acks=leader, durability=never, $batching" \
        mbps "$write_ceiling" "$write_name"
    row d "1 consumer reads (a)'s topic from the start (page cache warm)" \
        mbps "$read_ceiling" "$read_name"
    row e "e2e at ${E2E_RATE:-?} rec/s (half of (a)), 1 KiB, acks=leader, linger ${E2E_LINGER_MS} ms, ${E2E_SECONDS} s" \
        lat 0 ""
    if [[ -s "$WORK/strata-e2.json" ]]; then
        row e2 "as (e), at NATS's (e) rate: ${NATS_E2E_RATE} rec/s" lat 0 ""
    fi
    row f "as (a) but acks=all, durability=every_batch" mbps "$sync_ceiling" "dd O_DSYNC per 1 MiB"
    cpu_table
    local a f
    a=$(field "$WORK/strata-a.json" .megabytes_per_second)
    f=$(field "$WORK/strata-f.json" .megabytes_per_second)
    if [[ -n "$a" && -n "$f" ]]; then
        awk -v a="$a" -v f="$f" 'BEGIN { printf "\n(f) / (a) = %.0f %%\n", 100 * f / a }'
    fi
    runs_line
    printf '\nCommands:\n'
    printf '    iperf3 --server --bind 127.0.0.1 --one-off; iperf3 --client 127.0.0.1 --time 5 --json\n'
    printf '    dd if=/dev/zero of=F bs=1M count=%s [conv=fdatasync | oflag=dsync], best of 2, each after sync and %s s idle (fresh memory)\n' \
        "$DD_COUNT" "$FRESH_MEMORY_WAIT"
    printf '    before each scenario below, both brokers: sync, then %s s idle\n' "$SETTLE_SECONDS"
    printf '    each Strata scenario %s times, on topics ending -1 to -%s (the last is shown), each deleted after its run ((a)'"'"'s after (d))\n' "$RUNS" "$RUNS"
    printf '    memcpy 256 5\n'
    local command
    for command in "$WORK"/strata-*.command "$WORK"/nats-*.command; do
        if [[ -f "$command" ]]; then
            printf '    %s\n' "$(cat "$command")"
        fi
    done
}

main() {
    [[ -f Cargo.toml && -d benches ]] || die "run from the repository root"
    ((BYTES >= MEBIBYTE)) || die "STRATA_BASELINE_BYTES must be at least $MEBIBYTE"
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "STRATA_BASELINE_RUNS must be a whole number of at least 1"
    install_tools
    build
    mkdir -p -- "$PARENT"
    WORK=$(mktemp -d "$PARENT/strata-baseline.XXXXXX")
    log "work dir $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1))"
    ceiling_loopback
    ceiling_disk
    ceiling_memcpy
    start_strata
    run_strata
    stop_pid "$STRATA_PID"
    if [[ "$SKIP_NATS" != 1 ]]; then
        start_nats
        run_nats
        stop_pid "$NATS_PID"
        start_strata
        run_strata_at_nats_rate
        stop_pid "$STRATA_PID"
    fi
    print_table
}

main "$@"
