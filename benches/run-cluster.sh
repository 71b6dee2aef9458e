#!/usr/bin/env bash
# Strata on one node against Strata on a 3-broker cluster (issue 29), in one run on one
# machine: scenarios (a)-(d) of the baseline (benches/run-baseline.sh) and `strata bench
# metadata` against a single node, then the same against three brokers with the topics'
# partitions spread over them; one table. Run from the repository root:
#
#   benches/run-cluster.sh                                   # 512 MiB per scenario
#   STRATA_CLUSTER_BYTES=134217728 STRATA_CLUSTER_RUNS=1 benches/run-cluster.sh  # quick
#
# Environment (all optional):
#   STRATA_CLUSTER_BYTES        bytes of values per throughput scenario [536870912]
#   STRATA_CLUSTER_RUNS         rounds; the table shows each scenario's median run on
#                               each setup and lists them all [3]
#   STRATA_CLUSTER_DIR          parent of the temporary data dirs [${TMPDIR:-/tmp}]
#   STRATA_CLUSTER_PORT         first port [19500]: broker N (1-3) listens on
#                               PORT+10(N-1), metrics on that +1, cluster on that +2;
#                               the single node on PORT and PORT+1
#   STRATA_CLUSTER_METADATA_PARTITIONS  partitions of `bench metadata`'s large topic [1000]
#   STRATA_CLUSTER_METADATA_TOPICS      its one-partition topics [200]
#
# Each round starts a fresh single node, runs (a)-(d) and the metadata bench, stops it,
# then does the same on a fresh 3-broker cluster: the two setups alternate, as builds are
# compared here (docs/benchmarks.md), so that neither gets all the fast spells of this VM.
# The settings and the settle are the baseline's: 1 MiB batches, linger 5 ms, acks
# leader, `sync` and 2 s of quiet before each run, each run on its own topics, deleted
# after it. The three brokers are voters of one metadata quorum with replication factor
# 1, so a partition lives on its leader only and no record crosses between brokers; the
# client bootstraps from all three and sends each partition to its leader. Every topic is
# created before its run so the table can say which broker leads what.
#
# One machine holds everything: the brokers, the load tool, one disk and one page cache.
# Each run therefore also records where the cores went over its whole bench command: to
# each broker (/proc/PID/stat), to the load tool (its user and system time), to other
# processes (the rest of /proc/stat's busy time) and to the hypervisor (steal).
#
# Every process it starts runs on 127.0.0.1 only, is recorded by PID and is stopped by
# PID on exit; every client run is bounded by `timeout`. The temp dir is removed on exit;
# the table goes to stdout, progress, each run's raw JSON and the brokers' warnings to
# stderr.
set -euo pipefail

BYTES=${STRATA_CLUSTER_BYTES:-536870912}
RUNS=${STRATA_CLUSTER_RUNS:-3}
PARENT=${STRATA_CLUSTER_DIR:-${TMPDIR:-/tmp}}
PORT=${STRATA_CLUSTER_PORT:-19500}
METADATA_PARTITIONS=${STRATA_CLUSTER_METADATA_PARTITIONS:-1000}
METADATA_TOPICS=${STRATA_CLUSTER_METADATA_TOPICS:-200}
BROKERS=3
# A bound on any one client run, so a hang cannot keep the script forever.
RUN_SECONDS_MAX=900
# Seconds of quiet after the `sync` before each run (see settle).
SETTLE_SECONDS=2
# How long a started cluster may take to elect a controller and register every broker.
CLUSTER_READY_SECONDS=30

BATCH_BYTES=1048576
LINGER_MS=5
MEBIBYTE=1048576
RECORDS_1K=$((BYTES / 1024))
RECORDS_100=$((BYTES / 100))

LOG_NAME=cluster
# shellcheck source=benches/lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"

# create_topic NAME PARTITIONS SCENARIO RUN: creates the topic and appends its leaders
# (by partition) to $WORK/SETUP-SCENARIO.RUN.leaders.
create_topic() {
    local name=$1 partitions=$2 scenario=$3 run=$4
    strata_cli topic create "$name" --partitions "$partitions"
    timeout 60 "$BIN/strata" --bootstrap "$BOOTSTRAP" topic describe "$name" --output json |
        jq -r '[.. | objects | select(has("leader_epoch")) | .leader // "none"] | map(tostring) | join(" ")' \
            >"$WORK/$SETUP-$scenario.$run.leaders"
}

medians() {
    local setup
    for setup in one three; do
        median_run "$setup" a .megabytes_per_second
        median_run "$setup" b .records_per_second
        median_run "$setup" c .megabytes_per_second
        median_run "$setup" d .megabytes_per_second
        median_run "$setup" metadata .large_topic_shown_us
    done
}

# run_round RUN: (a)-(d) and the metadata bench once against the running setup.
run_round() {
    local common=(--message-bytes 1024 --batch-bytes "$BATCH_BYTES" --linger-ms "$LINGER_MS")
    local run=$1
    create_topic "a-1k-$run" 1 a "$run"
    strata_bench a "$run" produce --topic "a-1k-$run" --partitions 1 --producers 1 \
        --messages "$RECORDS_1K" "${common[@]}" --acks leader
    create_topic "b-100b-$run" 1 b "$run"
    strata_bench b "$run" produce --topic "b-100b-$run" --partitions 1 --producers 1 \
        --messages "$RECORDS_100" --message-bytes 100 --batch-bytes "$BATCH_BYTES" \
        --linger-ms "$LINGER_MS" --acks leader
    strata_cli topic delete "b-100b-$run"
    create_topic "c-1k-8p-$run" 8 c "$run"
    strata_bench c "$run" produce --topic "c-1k-8p-$run" --partitions 8 --producers 4 \
        --messages "$RECORDS_1K" "${common[@]}" --acks leader
    strata_cli topic delete "c-1k-8p-$run"
    strata_bench d "$run" consume --topic "a-1k-$run" --consumers 1 --messages "$RECORDS_1K"
    strata_cli topic delete "a-1k-$run"
    strata_bench metadata "$run" metadata --partitions "$METADATA_PARTITIONS" \
        --topics "$METADATA_TOPICS"
}

# --- the table ---------------------------------------------------------------------

# Leaders by broker: "broker 2" for one partition, "1:3 2:3 3:2" (node:partitions) for more.
leaders() {
    [[ -s "$1" ]] || { echo "n/a"; return; }
    tr ' ' '\n' <"$1" | sort -n | uniq -c |
        awk '{ n[NR] = $2; c[NR] = $1; total += $1 }
             END {
                 if (total == 1) { print "broker " n[1]; exit }
                 for (i = 1; i <= NR; i++) printf (i > 1 ? " " : "") "%s:%s", n[i], c[i]
                 print ""
             }'
}

# row SCENARIO SETTINGS KIND: KIND mbps (MB/s) or rps (records/s).
row() {
    local scenario=$1 settings=$2 kind=$3 one="$WORK/one-$1.json" three="$WORK/three-$1.json"
    local key=.megabytes_per_second
    [[ "$kind" == rps ]] && key=.records_per_second
    awk -v scenario="$scenario" -v settings="$settings" -v kind="$kind" \
        -v one="$(field "$one" "$key")" -v three="$(field "$three" "$key")" \
        -v by_run="$(for run in $(seq "$RUNS"); do
            if [[ "$scenario" == d ]]; then leaders "$WORK/three-a.$run.leaders"
            else leaders "$WORK/three-$scenario.$run.leaders"; fi
        done | paste -sd ';' | sed 's/;/; /g')" \
        'function shown(v) {
             if (v == "") return "n/a"
             return kind == "rps" ? sprintf("%.2f M rec/s", v / 1e6) : sprintf("%.0f MB/s", v)
         }
         BEGIN {
             ratio = (one == "" || three == "") ? "n/a" : sprintf("%.2fx", three / one)
             printf "| (%s) | %s | %s | %s | %s | %s |\n", scenario, settings, shown(one), shown(three), ratio, by_run
         }'
}

# Where the 2 cores went in each median run, over its whole bench command.
cpu_table() {
    printf '\n%s\n' '| run | setup | seconds | brokers (cores; by node id on 3) | strata bench | other processes | steal |'
    printf '%s\n' '|---|---|---|---|---|---|---|'
    local scenario setup label
    for scenario in a b c d metadata; do
        label=$scenario
        [[ ${#scenario} == 1 ]] && label="($scenario)"
        for setup in one three; do
            [[ -s "$WORK/$setup-$scenario.cpu" ]] || continue
            cpu_row "$label" "$([[ $setup == one ]] && echo "1 node" || echo "3 brokers")" "$WORK/$setup-$scenario.cpu"
        done
    done
}

# metadata_row LABEL JQ_EXPRESSION (µs): both setups and their ratio, in ms.
metadata_row() {
    local label=$1 key=$2
    awk -v label="$label" -v one="$(field "$WORK/one-metadata.json" "$key")" \
        -v three="$(field "$WORK/three-metadata.json" "$key")" \
        'function ms(v) { return v == "" ? "n/a" : sprintf("%.1f ms", v / 1e3) }
         BEGIN {
             ratio = (one == "" || three == "" || one == 0) ? "n/a" : sprintf("%.1fx", three / one)
             printf "| %s | %s | %s | %s |\n", label, ms(one), ms(three), ratio
         }'
}

metadata_table() {
    printf '\n`strata bench metadata --partitions %s --topics %s` (µs from the JSON, shown in ms):\n\n' \
        "$METADATA_PARTITIONS" "$METADATA_TOPICS"
    printf '%s\n' '| figure | 1 node | 3 brokers | 3 brokers / 1 node |'
    printf '%s\n' '|---|---|---|---|'
    metadata_row "topic of $METADATA_PARTITIONS partitions: create acknowledged" .large_topic_create_us
    metadata_row "... shown with every leader by every broker" .large_topic_shown_us
    local q
    for q in p50 p99 max; do
        metadata_row "topic of 1 partition: create acknowledged, $q" ".topic_create_us.$q"
    done
    for q in p50 p99 max; do
        metadata_row "... from acknowledged to shown by every broker, $q" ".topic_shown_us.$q"
    done
    printf '\n3 brokers, the large topic shown by broker: %s\n' \
        "$(field "$WORK/three-metadata.json" '[.large_topic_shown_by_broker[] | "\(.broker) \(.us / 1000 | floor) ms"] | join(", ")')"
}

runs_line() {
    local setup scenario values parts=()
    for setup in one three; do
        for scenario in a b c d metadata; do
            [[ -s "$WORK/$setup-$scenario.runs" ]] || continue
            if [[ "$scenario" == metadata ]]; then
                values=$(awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? ", " : "") "%.0f", $i / 1e3 }' "$WORK/$setup-$scenario.runs")
                parts+=("$setup ($scenario) $values ms until $METADATA_PARTITIONS partitions shown everywhere")
            elif [[ "$scenario" == b ]]; then
                values=$(awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? ", " : "") "%.2f", $i / 1e6 }' "$WORK/$setup-$scenario.runs")
                parts+=("$setup ($scenario) $values M rec/s")
            else
                values=$(awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? ", " : "") "%.0f", $i }' "$WORK/$setup-$scenario.runs")
                parts+=("$setup ($scenario) $values MB/s")
            fi
        done
    done
    local joined
    joined=$(printf '%s; ' "${parts[@]}")
    printf '\nAll %s runs of each (the tables show the median run): %s.\n' "$RUNS" "${joined%; }"
}

print_table() {
    local gib batching="batch ${BATCH_BYTES} B, linger ${LINGER_MS} ms"
    gib=$(awk -v b="$BYTES" 'BEGIN { printf "%.3g GiB", b / 1073741824 }')
    printf '\n## Strata on 1 node and on %s brokers, %s, %s per scenario, median of %s runs\n\n' \
        "$BROKERS" "$(date -u +%Y-%m-%dT%H:%MZ)" "$gib" "$RUNS"
    printf '%s\n' '| scenario | settings | 1 node | 3 brokers | 3 brokers / 1 node | leaders on 3 brokers, by run |'
    printf '%s\n' '|---|---|---|---|---|---|'
    row a "1 producer, 1 partition, 1 KiB, acks=leader, $batching" mbps
    row b "as (a), 100 B records" rps
    row c "4 producers, 8 partitions, 1 KiB, acks=leader, $batching" mbps
    row d "1 consumer reads (a)'s topic from the start (page cache warm)" mbps
    cpu_table
    metadata_table
    runs_line
    printf '\nShared: %s cores, one disk and one page cache for the load tool and every broker; ' "$(nproc)"
    printf 'the brokers talk over loopback (Raft every 100 ms, broker heartbeats every 250 ms; '
    printf 'replication factor 1, so no records cross between brokers). CPU figures are over '
    printf 'each whole bench command (connections and topic lookups included), not only its '
    printf 'measured window.\n'
    printf '\nCommands (the client bootstraps from every broker of the setup):\n'
    printf '    before each run: sync, then %s s idle; topics created with `strata topic create` first, deleted after their run ((a)'"'"'s after (d))\n' "$SETTLE_SECONDS"
    local command
    for command in "$WORK"/*.command; do
        printf '    %s\n' "$(cat "$command")"
    done
}

main() {
    [[ -f Cargo.toml && -d benches ]] || die "run from the repository root"
    ((BYTES >= MEBIBYTE)) || die "STRATA_CLUSTER_BYTES must be at least $MEBIBYTE"
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "STRATA_CLUSTER_RUNS must be a whole number of at least 1"
    build
    mkdir -p -- "$PARENT"
    WORK=$(mktemp -d "$PARENT/strata-cluster.XXXXXX")
    log "work dir $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1)), $(nproc) cores"
    local round
    for round in $(seq "$RUNS"); do
        start_single "$round"
        run_round "$round"
        stop_setup "$round"
        start_cluster "$round"
        run_round "$round"
        stop_setup "$round"
    done
    medians
    print_table
}

main "$@"
