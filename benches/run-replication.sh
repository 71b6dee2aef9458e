#!/usr/bin/env bash
# Strata on one node against a 3-broker cluster that replicates every partition 3 times
# (issue 30), in one run on one machine; one table. Run from the repository root:
#
#   benches/run-replication.sh                                          # 512 MiB
#   STRATA_REPLICATION_BYTES=134217728 STRATA_REPLICATION_RUNS=1 benches/run-replication.sh
#
# Environment (all optional):
#   STRATA_REPLICATION_BYTES        bytes of values per throughput run [536870912]
#   STRATA_REPLICATION_RUNS         rounds; the table shows each figure's median run and
#                                   lists every run [3]
#   STRATA_REPLICATION_E2E_RATE     records/s of the end-to-end runs [37500]
#   STRATA_REPLICATION_E2E_SECONDS  length of an end-to-end run [10]
#   STRATA_REPLICATION_FAILOVER_RATE     records/s of the producer a failover runs under [2000]
#   STRATA_REPLICATION_FAILOVER_SECONDS  length of that producer's run [15]
#   STRATA_REPLICATION_DIR          parent of the temporary data dirs [${TMPDIR:-/tmp}]
#   STRATA_REPLICATION_PORT         first port [19600]: broker N (1-3) listens on
#                                   PORT+10(N-1), metrics on that +1, cluster on that +2;
#                                   the single node on PORT and PORT+1
#
# Each round starts a fresh single node and runs, on a topic of 1 partition:
#   (a)  1 producer, 1 KiB records, acks=leader: the baseline's (a);
#   (e)  `bench e2e` at E2E_RATE records/s of 1 KiB, acks=leader, linger 0: the
#        baseline's (e) at a fixed rate;
# then stops it, starts a fresh cluster of 3 brokers, and runs, each on a topic of 1
# partition with replication factor 3 and min_insync_replicas 2:
#   (a)  as above with acks=all: every record on the whole ISR before it is acknowledged;
#   (a') as above with acks=leader, for reference (followers still copy every record);
#   (e)  `bench e2e` as above with acks=all;
#   kill -9: a producer at FAILOVER_RATE records/s, acks=all, idempotent; once its topic
#        holds 3 s of records, kill -9 of the partition's leader. The figure is the
#        longest time the producer went without an acknowledgement (a new leader is
#        elected once the dead broker's session lapses: broker_session_timeout_ms, 3 s
#        by default); then the killed broker is started again on its data and the run
#        waits until it is back in the ISR;
#   SIGTERM: the same with a controlled shutdown of the leader (it hands its leaderships
#        over before it stops), then the same restart.
# The setups alternate, as builds are compared here (docs/benchmarks.md), so that
# neither gets all the fast spells of this VM. The settings and the settle are the
# baseline's and benches/run-cluster.sh's: 1 MiB batches, linger 5 ms (0 for e2e),
# `sync` and 2 s of quiet before each run, each run on its own topic, deleted after it.
#
# One machine holds everything: three brokers, the load tool, one disk and one page
# cache, so each byte a record carries is written three times to the same disk and
# crosses loopback twice more. Each throughput and e2e run also records where the cores
# went over its whole bench command (benches/lib/cluster.sh, strata_bench).
#
# Every process it starts runs on 127.0.0.1 only, is recorded by PID and is stopped by
# PID on exit; every client run is bounded by `timeout`. The temp dir is removed on exit;
# the table goes to stdout, progress, each run's raw JSON and the brokers' warnings to
# stderr.
set -euo pipefail

BYTES=${STRATA_REPLICATION_BYTES:-536870912}
RUNS=${STRATA_REPLICATION_RUNS:-3}
E2E_RATE=${STRATA_REPLICATION_E2E_RATE:-37500}
E2E_SECONDS=${STRATA_REPLICATION_E2E_SECONDS:-10}
FAILOVER_RATE=${STRATA_REPLICATION_FAILOVER_RATE:-2000}
FAILOVER_SECONDS=${STRATA_REPLICATION_FAILOVER_SECONDS:-15}
PARENT=${STRATA_REPLICATION_DIR:-${TMPDIR:-/tmp}}
PORT=${STRATA_REPLICATION_PORT:-19600}
BROKERS=3
# A bound on any one client run, so a hang cannot keep the script forever.
RUN_SECONDS_MAX=900
# Seconds of quiet after the `sync` before each run (see settle).
SETTLE_SECONDS=2
# How long a started cluster may take to elect a controller and register every broker.
CLUSTER_READY_SECONDS=30
# How long a restarted broker may take to be back in its partition's ISR.
REJOIN_SECONDS_MAX=60
# The failover signal goes out once the producer's topic holds this many seconds of its
# records: the producer is connected and steady.
FAILOVER_AFTER_SECONDS=3
# The cluster's broker session (broker_session_timeout_ms, left at its default).
SESSION_TIMEOUT_MS=3000

REPLICAS=3
MIN_INSYNC=2
BATCH_BYTES=1048576
LINGER_MS=5
E2E_LINGER_MS=0
MEBIBYTE=1048576
RECORDS_1K=$((BYTES / 1024))

LOG_NAME=replication
# shellcheck source=benches/lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"

# --- topics -----------------------------------------------------------------------

# create_topic NAME SCENARIO RUN: one partition; replicated 3 times, min ISR 2, on the
# cluster. Its leader and replicas go to $WORK/SETUP-SCENARIO.RUN.leaders.
create_topic() {
    local name=$1 scenario=$2 run=$3 replicated=()
    if [[ "$SETUP" == three ]]; then
        replicated=(--replication-factor "$REPLICAS" --config "min_insync_replicas=$MIN_INSYNC")
    fi
    strata_cli topic create "$name" --partitions 1 "${replicated[@]}"
    describe "$name" | jq -r '.partitions[0] | "leader \(.leader // "none"), ISR \(.in_sync_replicas | map(tostring) | join(","))"' \
        >"$WORK/$SETUP-$scenario.$run.leaders"
}

describe() {
    timeout 60 "$BIN/strata" --bootstrap "$BOOTSTRAP" topic describe "$1" --output json
}

# partition_field TOPIC JQ [BOOTSTRAP]: a field of the topic's partition 0, "" if it
# cannot be read (no leader for the moment, a broker down or still joining).
partition_field() {
    timeout 10 "$BIN/strata" --bootstrap "${3:-$BOOTSTRAP}" topic describe "$1" --output json 2>/dev/null |
        jq -r ".partitions[0] | $2 // empty" 2>/dev/null || true
}

# --- the runs ---------------------------------------------------------------------

produce_args() { # produce_args ACKS: scenario (a)'s producer
    echo --partitions 1 --producers 1 --messages "$RECORDS_1K" --message-bytes 1024 \
        --batch-bytes "$BATCH_BYTES" --linger-ms "$LINGER_MS" --acks "$1"
}

e2e_args() { # e2e_args ACKS: scenario (e)'s producer and consumer
    echo --partitions 1 --producers 1 --consumers 1 --messages "$((E2E_RATE * E2E_SECONDS))" \
        --rate "$E2E_RATE" --message-bytes 1024 --batch-bytes "$BATCH_BYTES" \
        --linger-ms "$E2E_LINGER_MS" --acks "$1"
}

# run_single RUN: (a) and (e) on the single node.
run_single() {
    local run=$1
    create_topic "a-1k-$run" a "$run"
    # shellcheck disable=SC2046 # the arguments are words without spaces
    strata_bench a "$run" produce --topic "a-1k-$run" $(produce_args leader)
    strata_cli topic delete "a-1k-$run"
    create_topic "e-1k-$run" e "$run"
    # shellcheck disable=SC2046
    strata_bench e "$run" e2e --topic "e-1k-$run" $(e2e_args leader)
    strata_cli topic delete "e-1k-$run"
}

# run_cluster RUN: (a) with acks=all and acks=leader, (e) and the two failovers on the
# cluster.
run_cluster() {
    local run=$1
    create_topic "a-all-$run" a "$run"
    # shellcheck disable=SC2046
    strata_bench a "$run" produce --topic "a-all-$run" $(produce_args all)
    strata_cli topic delete "a-all-$run"
    create_topic "a-leader-$run" leader "$run"
    # shellcheck disable=SC2046
    strata_bench leader "$run" produce --topic "a-leader-$run" $(produce_args leader)
    strata_cli topic delete "a-leader-$run"
    create_topic "e-all-$run" e "$run"
    # shellcheck disable=SC2046
    strata_bench e "$run" e2e --topic "e-all-$run" $(e2e_args all)
    strata_cli topic delete "e-all-$run"
    failover kill "$run" KILL
    failover term "$run" TERM
}

# failover SCENARIO RUN SIGNAL: a paced acks=all producer on a fresh topic; once the
# topic holds FAILOVER_AFTER_SECONDS of its records, SIGNAL to the partition's leader.
# The producer's report goes to $WORK/three-SCENARIO.RUN.json, what happened to
# $WORK/three-SCENARIO.RUN.events. Then the broker is started again, and the run waits
# until it is back in the partition's ISR.
failover() {
    local scenario=$1 run=$2 signal=$3 topic="f-$1-$2" leader controller pid bench status=0
    local hw waited=0 start signalled after
    create_topic "$topic" "$scenario" "$run"
    settle
    local command=(produce --topic "$topic" --partitions 1 --producers 1
        --duration "${FAILOVER_SECONDS}s" --rate "$FAILOVER_RATE" --message-bytes 1024
        --linger-ms "$LINGER_MS" --acks all)
    printf '%s\n' "strata bench ${command[*]}; kill -$signal of the leader once the topic holds ${FAILOVER_AFTER_SECONDS} s of records" \
        >"$WORK/three-$scenario.command"
    log "three ($scenario, run $run of $RUNS): strata bench ${command[*]}"
    timeout "$RUN_SECONDS_MAX" "$BIN/strata" --bootstrap "$BOOTSTRAP" bench "${command[@]}" \
        --output json >"$WORK/three-$scenario.$run.json" &
    bench=$!
    start=$(date +%s.%N)
    while :; do
        hw=$(partition_field "$topic" .high_watermark)
        ((${hw:-0} >= FAILOVER_RATE * FAILOVER_AFTER_SECONDS)) && break
        kill -0 "$bench" 2>/dev/null || die "the producer ended before the failover"
        ((waited < 300)) || die "the topic $topic holds ${hw:-0} records after 30 s"
        sleep 0.1
        waited=$((waited + 1))
    done
    leader=$(partition_field "$topic" .leader)
    [[ "$leader" =~ ^[1-9]$ ]] || die "no leader for $topic: '$leader'"
    controller=$(timeout 10 "$BIN/strata" --bootstrap "$BOOTSTRAP" cluster status --output json | jq -r '.controller.leader')
    pid=${SETUP_PIDS[leader - 1]}
    signalled=$(date +%s.%N)
    log "three ($scenario): kill -$signal broker $leader (pid $pid; the controller is $controller)"
    forget_pids "$pid"
    kill "-$signal" "$pid"
    if [[ "$signal" == TERM ]]; then
        # Bounded as stop_pids bounds a stop.
        local stopping=0
        while kill -0 "$pid" 2>/dev/null && ((stopping < 300)); do
            sleep 0.1
            stopping=$((stopping + 1))
        done
        kill -0 "$pid" 2>/dev/null && die "broker $leader did not stop within 30 s of SIGTERM"
    fi
    wait "$pid" 2>/dev/null || true
    after=$(date +%s.%N)
    wait "$bench" || status=$?
    log "three ($scenario): exit $status, $(cat "$WORK/three-$scenario.$run.json")"
    local new_leader
    new_leader=$(partition_field "$topic" .leader)
    awk -v leader="$leader" -v new="${new_leader:-none}" -v controller="$controller" \
        -v into="$(awk -v a="$start" -v b="$signalled" 'BEGIN { printf "%.1f", b - a }')" \
        -v stop="$(awk -v a="$signalled" -v b="$after" 'BEGIN { printf "%.1f", b - a }')" \
        -v status="$status" 'BEGIN {
            printf "leader %s%s, signalled %s s into the run, exited %s s later; then leader %s; bench exit %s\n",
                leader, (leader == controller ? " (also the controller)" : ""), into, stop, new, status
        }' >"$WORK/three-$scenario.$run.events"
    restart_broker "$leader" "$run" "$topic"
    strata_cli topic delete "$topic"
}

# restart_broker NODE ROUND TOPIC: starts broker NODE again on its data, then waits
# until the other brokers see every broker alive and NODE back in TOPIC's ISR, and NODE
# itself is done joining: it answers an admin request (a create of the existing TOPIC,
# with --if-not-exists) instead of refusing it with LeaderNotAvailable. The others are
# asked for the ISR: a broker still joining answers from the metadata it has so far.
restart_broker() {
    local node=$1 round=$2 topic=$3 starts waited=0 isr="" target
    local full=$BOOTSTRAP address="127.0.0.1:$((PORT + 10 * (node - 1)))" others=()
    # shellcheck disable=SC2086 # the list splits at its commas
    for target in ${BOOTSTRAP//,/ }; do
        [[ "$target" == "$address" ]] || others+=("$target")
    done
    starts=$(find "$WORK" -maxdepth 1 -name "three-$node-r$round.*.log" | wc -l)
    local file="$WORK/three-$node-r$round.$((starts + 1)).log"
    start_broker "$node" "$round" "$file"
    wait_for_line "$file" "listening on" "${SETUP_PIDS[node - 1]}"
    BOOTSTRAP=$(IFS=,; echo "${others[*]}")
    wait_for_cluster
    BOOTSTRAP=$full
    while ((waited < REJOIN_SECONDS_MAX * 10)); do
        isr=$(partition_field "$topic" '.in_sync_replicas | map(tostring) | join(",")' "${others[0]}")
        [[ ",$isr," == *",$node,"* ]] && break
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ ",$isr," == *",$node,"* ]] || die "broker $node not back in the ISR of $topic after $REJOIN_SECONDS_MAX s: $isr"
    until timeout 10 "$BIN/strata" --bootstrap "$address" topic create "$topic" --partitions 1 \
        --if-not-exists >/dev/null 2>&1; do
        ((waited < REJOIN_SECONDS_MAX * 10)) || die "broker $node still joining after $REJOIN_SECONDS_MAX s"
        sleep 0.1
        waited=$((waited + 1))
    done
    log "broker $node back in the ISR of $topic ($isr) and done joining, $((waited / 10)) s after it listened"
}

medians() {
    median_run one a .megabytes_per_second
    median_run one e .latency_us_p99
    median_run three a .megabytes_per_second
    median_run three leader .megabytes_per_second
    median_run three e .latency_us_p99
}

# The runs' values of KEY for SETUP-SCENARIO, in run order: "v1 v2 ...".
values() {
    local setup=$1 scenario=$2 key=$3 run out=()
    for run in $(seq "$RUNS"); do
        out+=("$(field "$WORK/$setup-$scenario.$run.json" "$key")")
    done
    echo "${out[*]}"
}

# --- the table --------------------------------------------------------------------

# ratio_row LABEL SETTINGS ONE_SCENARIO THREE_SCENARIO TARGET: throughput, MB/s.
ratio_row() {
    local label=$1 settings=$2 one=$3 three=$4 target=$5
    awk -v label="$label" -v settings="$settings" -v target="$target" \
        -v one="$(field "$WORK/one-$one.json" .megabytes_per_second)" \
        -v three="$(field "$WORK/three-$three.json" .megabytes_per_second)" \
        'BEGIN {
             shown_one = one == "" ? "n/a" : sprintf("%.0f MB/s", one)
             shown_three = three == "" ? "n/a" : sprintf("%.0f MB/s", three)
             ratio = (one == "" || three == "") ? "n/a" : sprintf("%.0f %%", 100 * three / one)
             met = "-"
             if (target != "" && ratio != "n/a") met = (100 * three / one >= target) ? "yes" : "no"
             printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, settings, shown_one, shown_three, ratio,
                 (target == "" ? "reference" : ">= " target " %"), met
         }'
}

latency_row() {
    awk -v settings="at $E2E_RATE rec/s of 1 KiB, linger $E2E_LINGER_MS ms, ${E2E_SECONDS} s; 1 node acks=leader, 3 brokers acks=all" \
        -v o50="$(field "$WORK/one-e.json" .latency_us_p50)" -v o99="$(field "$WORK/one-e.json" .latency_us_p99)" \
        -v o999="$(field "$WORK/one-e.json" .latency_us_p99_9)" \
        -v t50="$(field "$WORK/three-e.json" .latency_us_p50)" -v t99="$(field "$WORK/three-e.json" .latency_us_p99)" \
        -v t999="$(field "$WORK/three-e.json" .latency_us_p99_9)" \
        'function lat(p50, p99, p999) {
             return p99 == "" ? "n/a" : sprintf("p50 %.2f / p99 %.2f / p99.9 %.2f ms", p50 / 1e3, p99 / 1e3, p999 / 1e3)
         }
         BEGIN {
             diff = (o99 == "" || t99 == "") ? "n/a" : sprintf("p99 %+.2f ms", (t99 - o99) / 1e3)
             met = diff == "n/a" ? "-" : ((t99 - o99 <= 1000) ? "yes" : "no")
             printf "| (e) e2e | %s | %s | %s | %s | p99 <= 1 node + 1 ms | %s |\n", settings, lat(o50, o99, o999), lat(t50, t99, t999), diff, met
         }'
}

# failover_row SCENARIO LABEL TARGET_MS: every run's longest window without an
# acknowledgement, its failures, and what happened.
failover_row() {
    local scenario=$1 label=$2 target_ms=$3 run events=()
    for run in $(seq "$RUNS"); do
        events+=("run $run: $(cat "$WORK/three-$scenario.$run.events" 2>/dev/null || echo "n/a")")
    done
    awk -v label="$label" -v target="$target_ms" -v gaps="$(values three "$scenario" .ack_gap_us_max)" \
        -v failed="$(values three "$scenario" .records_failed)" \
        -v fatal="$(values three "$scenario" .records_failed_non_retriable)" \
        -v records="$(values three "$scenario" .records)" \
        -v events="$(printf '%s; ' "${events[@]}")" \
        'BEGIN {
             n = split(gaps, g, " "); split(failed, f, " "); split(fatal, x, " "); split(records, r, " ")
             worst = -1; shown = ""; failures = ""; fatal_total = 0
             for (i = 1; i <= n; i++) {
                 shown = shown (i > 1 ? ", " : "") sprintf("%.2f s", g[i] / 1e6)
                 failures = failures (i > 1 ? ", " : "") sprintf("%d of %d / %d", f[i], r[i] + f[i], x[i])
                 if (g[i] > worst) worst = g[i]
                 fatal_total += x[i]
             }
             met = (n == 0) ? "-" : ((worst <= target * 1000 && fatal_total == 0) ? "yes" : "no")
             sub(/; $/, "", events)
             printf "| %s | %s | %s | <= %.1f s, 0 non-retriable | %s | %s |\n", label, (n ? shown : "n/a"), failures, target / 1e3, met, events
         }'
}

cpu_table() {
    printf '\n%s\n' '| run | setup | seconds | brokers (cores; by node id on 3) | strata bench | other processes | steal |'
    printf '%s\n' '|---|---|---|---|---|---|---|'
    cpu_row "(a)" "1 node, acks=leader" "$WORK/one-a.cpu"
    cpu_row "(a)" "3 brokers, RF=3, acks=all" "$WORK/three-a.cpu"
    cpu_row "(a')" "3 brokers, RF=3, acks=leader" "$WORK/three-leader.cpu"
    cpu_row "(e)" "1 node, acks=leader" "$WORK/one-e.cpu"
    cpu_row "(e)" "3 brokers, RF=3, acks=all" "$WORK/three-e.cpu"
}

runs_line() {
    printf '\nAll %s runs of each (the tables show the median run): ' "$RUNS"
    awk -v one_a="$(cat "$WORK/one-a.runs")" -v all="$(cat "$WORK/three-a.runs")" \
        -v leader="$(cat "$WORK/three-leader.runs")" -v one_e="$(cat "$WORK/one-e.runs")" \
        -v three_e="$(cat "$WORK/three-e.runs")" \
        'function list(values, scale, format,    n, v, i, out) {
             n = split(values, v, " ")
             for (i = 1; i <= n; i++) out = out (i > 1 ? ", " : "") sprintf(format, v[i] * scale)
             return out
         }
         BEGIN {
             printf "1 node (a) %s MB/s; 3 brokers (a) acks=all %s MB/s; (a'"'"') acks=leader %s MB/s; ",
                 list(one_a, 1, "%.0f"), list(all, 1, "%.0f"), list(leader, 1, "%.0f")
             printf "(e) p99 1 node %s ms, 3 brokers %s ms.\n", list(one_e, 1e-3, "%.2f"), list(three_e, 1e-3, "%.2f")
         }'
    printf 'Leaders and ISR of the 3-broker topics, by run: %s.\n' \
        "$(cat "$WORK"/three-a.*.leaders 2>/dev/null | paste -sd ';' | sed 's/;/; /g')"
}

print_table() {
    local gib batching="batch ${BATCH_BYTES} B, linger ${LINGER_MS} ms"
    gib=$(awk -v b="$BYTES" 'BEGIN { printf "%.3g GiB", b / 1073741824 }')
    printf '\n## Strata on 1 node and on %s brokers with replication factor %s, %s, %s per throughput run, median of %s rounds\n\n' \
        "$BROKERS" "$REPLICAS" "$(date -u +%Y-%m-%dT%H:%MZ)" "$gib" "$RUNS"
    printf 'Load at the start and end: %s; %s.\n\n' "$LOAD_START" "$(uptime | sed 's/.*load average/load average/')"
    printf '%s\n' '| scenario | settings | 1 node | 3 brokers, RF=3, min ISR 2 | 3 brokers vs 1 node | target | met |'
    printf '%s\n' '|---|---|---|---|---|---|---|'
    ratio_row "(a)" "1 producer, 1 partition, 1 KiB, $batching; 1 node acks=leader, 3 brokers acks=all" a a 35
    ratio_row "(a')" "as (a), 3 brokers acks=leader" a leader ""
    latency_row
    printf '\nFailover under a producer at %s rec/s of 1 KiB, acks=all, idempotent, on a topic of 1 partition, RF=3, min ISR 2 (broker_session_timeout_ms %s):\n\n' \
        "$FAILOVER_RATE" "$SESSION_TIMEOUT_MS"
    printf '%s\n' '| event | longest window without an acknowledged write, by run | failed of sent / not retriable, by run | target | met | what happened |'
    printf '%s\n' '|---|---|---|---|---|---|'
    failover_row kill "kill -9 of the leader" "$((SESSION_TIMEOUT_MS + 1000))"
    failover_row term "SIGTERM of the leader (controlled shutdown)" 1000
    cpu_table
    runs_line
    printf '\nShared: %s cores, one disk and one page cache for the load tool and every broker; ' "$(nproc)"
    printf 'the brokers talk over loopback. CPU figures are over each whole bench command '
    printf '(connections and topic lookups included), not only its measured window.\n'
    printf '\nCommands (the client bootstraps from every broker of the setup):\n'
    printf '    before each run: sync, then %s s idle; each run on a topic of its own, created with `strata topic create NAME --partitions 1` (on 3 brokers: `--replication-factor %s --config min_insync_replicas=%s`), deleted after it\n' \
        "$SETTLE_SECONDS" "$REPLICAS" "$MIN_INSYNC"
    local command
    for command in "$WORK"/*.command; do
        printf '    %s: %s\n' "$(basename "$command" .command)" "$(cat "$command")"
    done
}

main() {
    [[ -f Cargo.toml && -d benches ]] || die "run from the repository root"
    ((BYTES >= MEBIBYTE)) || die "STRATA_REPLICATION_BYTES must be at least $MEBIBYTE"
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "STRATA_REPLICATION_RUNS must be a whole number of at least 1"
    LOAD_START=$(uptime | sed 's/.*load average/load average/')
    build
    mkdir -p -- "$PARENT"
    WORK=$(mktemp -d "$PARENT/strata-replication.XXXXXX")
    log "work dir $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1)), $(nproc) cores, $LOAD_START"
    local round
    for round in $(seq "$RUNS"); do
        start_single "$round"
        run_single "$round"
        stop_setup "$round"
        start_cluster "$round"
        run_cluster "$round"
        stop_setup "$round"
    done
    medians
    print_table
}

main "$@"
