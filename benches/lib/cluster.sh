# Shared by benches/run-cluster.sh and benches/run-replication.sh (sourced, not run):
# starting and stopping a single node or a 3-broker cluster on loopback, the settle
# before each run, a `strata bench` run with where the cores went over it, and the
# median of alternating rounds.
#
# The sourcing script sets, before calling any of these:
#   LOG_NAME                 the prefix of progress lines ("cluster", "replication")
#   PORT                     first port: broker N (1-3) listens on PORT+10(N-1), metrics
#                            on that +1, cluster on that +2; the single node on PORT, PORT+1
#   BROKERS                  brokers of the cluster (3)
#   RUNS                     rounds
#   RUN_SECONDS_MAX          a bound on any one client run
#   SETTLE_SECONDS           seconds of quiet after the `sync` before each run
#   CLUSTER_READY_SECONDS    how long a started cluster may take to be ready
# and, once made, WORK (the temp dir, removed on exit) and BIN (by `build`).
#
# Every process started here runs on 127.0.0.1 only, is recorded by PID and is stopped
# by PID on exit; every client run is bounded by `timeout`.

CLOCK_TICKS=$(getconf CLK_TCK)

log() { printf '[%s %s] %s\n' "$LOG_NAME" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PIDs of the brokers this script started, stopped by cleanup.
PIDS=()
WORK=""
cleanup() {
    stop_pids "${PIDS[@]}"
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT

# Stops processes we started: TERM to all at once (a cluster's brokers shut down
# together, so none waits on a quorum the others already left), up to 10 s, then KILL.
# They leave PIDS, so that cleanup never signals a later process that got the same PID.
stop_pids() {
    local pid waited=0
    forget_pids "$@"
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop after TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# Takes PIDs out of PIDS (a process that is stopped, or about to be, by the caller).
forget_pids() {
    local other kept=()
    for other in "${PIDS[@]}"; do
        [[ " $* " == *" $other "* ]] || kept+=("$other")
    done
    PIDS=("${kept[@]}")
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

build() {
    command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
    log "building release binaries"
    cargo build --release --bin strata-broker --bin strata >&2
    BIN=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release
}

# --- the brokers ------------------------------------------------------------------

# The setup under test: `one` (a single node) or `three` (a cluster), its brokers' PIDs
# (in node id order) and the bootstrap list.
SETUP=""
SETUP_PIDS=()
BOOTSTRAP=""

# start_single ROUND
start_single() {
    local round=$1
    log "round $round: starting a single node on 127.0.0.1:$PORT, data in $WORK/one-r$round"
    "$BIN/strata-broker" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$((PORT + 1))" \
        --data-dir "$WORK/one-r$round" --log-level warn >"$WORK/one-r$round.log" 2>&1 &
    SETUP=one
    SETUP_PIDS=("$!")
    BOOTSTRAP="127.0.0.1:$PORT"
    PIDS+=("$!")
    wait_for_line "$WORK/one-r$round.log" "listening on" "${SETUP_PIDS[0]}"
}

# The voters' cluster addresses, for --peers.
peers() {
    local node peers=""
    for node in $(seq "$BROKERS"); do
        peers+="${peers:+,}$node@127.0.0.1:$((PORT + 10 * (node - 1) + 2))"
    done
    echo "$peers"
}

# start_broker NODE ROUND LOG: broker NODE of the cluster, on its ports and data dir, its
# output to LOG; its PID becomes SETUP_PIDS[NODE - 1]. Returns once it listens.
start_broker() {
    local node=$1 round=$2 file=$3 base=$((PORT + 10 * (node - 1)))
    log "round $round: starting broker $node on 127.0.0.1:$base, data in $WORK/three-$node-r$round"
    "$BIN/strata-broker" --node-id "$node" --listen "127.0.0.1:$base" \
        --metrics-listen "127.0.0.1:$((base + 1))" --cluster-listen "127.0.0.1:$((base + 2))" \
        --peers "$(peers)" --data-dir "$WORK/three-$node-r$round" --log-level warn \
        >"$file" 2>&1 &
    SETUP_PIDS[node - 1]=$!
    PIDS+=("$!")
}

# start_cluster ROUND: three voters on PORT, PORT+10, PORT+20 (and +1 metrics, +2
# cluster each), started together: none serves before the quorum has a leader.
start_cluster() {
    local round=$1 node addresses=()
    for node in $(seq "$BROKERS"); do
        addresses+=("127.0.0.1:$((PORT + 10 * (node - 1)))")
    done
    SETUP=three
    SETUP_PIDS=()
    BOOTSTRAP=$(IFS=,; echo "${addresses[*]}")
    for node in $(seq "$BROKERS"); do
        start_broker "$node" "$round" "$WORK/three-$node-r$round.log"
    done
    for node in $(seq "$BROKERS"); do
        wait_for_line "$WORK/three-$node-r$round.log" "listening on" "${SETUP_PIDS[node - 1]}"
    done
    wait_for_cluster
}

# Until `cluster status` shows a controller and every broker alive.
wait_for_cluster() {
    local waited=0 status=""
    while ((waited < CLUSTER_READY_SECONDS * 10)); do
        status=$(timeout 10 "$BIN/strata" --bootstrap "$BOOTSTRAP" cluster status --output json 2>/dev/null || true)
        if [[ -n "$status" ]] && jq -e --argjson n "$BROKERS" \
            '.controller.leader != null and ([.brokers[] | select(.state == "alive")] | length) == $n' \
            <<<"$status" >/dev/null; then
            log "cluster ready: $(jq -c '{controller, brokers: [.brokers[] | {id, state}]}' <<<"$status")"
            return
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    die "the cluster was not ready after $CLUSTER_READY_SECONDS s: $status"
}

# stop_setup ROUND: stops the setup's brokers and removes their data.
stop_setup() {
    local round=$1
    stop_pids "${SETUP_PIDS[@]}"
    warnings "$round"
    rm -rf -- "$WORK/$SETUP"-*r"$round"/
}

# The brokers' warnings and errors (they run at --log-level warn), for the record: the
# log of each start (ROUND.log) and of each restart (ROUND.N.log).
warnings() {
    local round=$1 file count
    for file in "$WORK/$SETUP"-*r"$round".log "$WORK/$SETUP"-*r"$round".*.log; do
        [[ -f "$file" ]] || continue
        count=$(grep -c -E 'WARN|ERROR' "$file" || true)
        log "$(basename "$file"): $count warning or error lines"
        grep -E 'WARN|ERROR' "$file" | head -20 >&2 || true
    done
}

# --- the runs ---------------------------------------------------------------------

# Writes back what the runs before wrote, then waits, so a run does not share the disk
# and the CPUs with the kernel's writeback of an earlier one (the page cache stays warm
# for reads).
settle() {
    sync
    sleep "$SETTLE_SECONDS"
}

strata_cli() {
    log "$SETUP: strata $*"
    timeout 60 "$BIN/strata" --bootstrap "$BOOTSTRAP" "$@" >&2
}

# Clock ticks each broker of the setup has used so far, one line "t1 t2 ...".
broker_ticks() {
    local pid ticks=()
    for pid in "${SETUP_PIDS[@]}"; do
        # utime and stime: fields 14 and 15, counted after the ")" that ends the name.
        ticks+=("$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")")
    done
    echo "${ticks[*]}"
}

# Clock ticks of the whole machine so far: "busy steal", busy being user, nice, system,
# irq and softirq over all cores (idle, iowait and steal left out).
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat
}

# strata_bench SCENARIO RUN ARGS...: one run into $WORK/SETUP-SCENARIO.RUN.json, and where
# the machine's CPU went over the whole command into $WORK/SETUP-SCENARIO.RUN.cpu:
# "seconds tool others steal b1 b2 ...", in cores (steal in cores of all).
strata_bench() {
    local scenario=$1 run=$2 brokers_before brokers_after machine_before machine_after
    local start end tool
    shift 2
    settle
    log "$SETUP ($scenario, run $run of $RUNS): strata bench $*"
    printf '%s\n' "strata bench $*" >"$WORK/$SETUP-$scenario.command"
    brokers_before=$(broker_ticks)
    machine_before=$(machine_ticks)
    start=$(date +%s.%N)
    # `time` reports the user and system seconds of timeout and the strata it waited for.
    local TIMEFORMAT='%3U %3S'
    { time timeout "$RUN_SECONDS_MAX" "$BIN/strata" --bootstrap "$BOOTSTRAP" bench "$@" \
        --output json >"$WORK/$SETUP-$scenario.$run.json" 2>&3; } 3>&2 2>"$WORK/time"
    end=$(date +%s.%N)
    machine_after=$(machine_ticks)
    brokers_after=$(broker_ticks)
    tool=$(awk '{ print $1 + $2 }' "$WORK/time")
    awk -v start="$start" -v end="$end" -v hz="$CLOCK_TICKS" -v tool="$tool" \
        -v m0="$machine_before" -v m1="$machine_after" \
        -v b0="$brokers_before" -v b1="$brokers_after" 'BEGIN {
            seconds = end - start
            split(m0, m_before, " "); split(m1, m_after, " ")
            n = split(b0, before, " "); split(b1, after, " ")
            brokers = ""; used = 0
            for (i = 1; i <= n; i++) {
                cores = (after[i] - before[i]) / hz / seconds
                used += cores
                brokers = brokers sprintf(" %.2f", cores)
            }
            busy = (m_after[1] - m_before[1]) / hz / seconds
            steal = (m_after[2] - m_before[2]) / hz / seconds
            others = busy - used - tool / seconds
            printf "%.2f %.2f %.2f %.2f%s\n", seconds, tool / seconds, (others < 0 ? 0 : others), steal, brokers
        }' >"$WORK/$SETUP-$scenario.$run.cpu"
    log "$SETUP ($scenario): $(cat "$WORK/$SETUP-$scenario.$run.json")"
    log "$SETUP ($scenario): seconds, cores of strata bench, other processes, steal, brokers: $(cat "$WORK/$SETUP-$scenario.$run.cpu")"
}

# median_run SETUP SCENARIO JQ_KEY: copies the median run (the lower middle one for an
# even count) to $WORK/SETUP-SCENARIO.json, its .cpu alongside, and every run's value,
# in run order, to $WORK/SETUP-SCENARIO.runs.
median_run() {
    local setup=$1 scenario=$2 key=$3 run file lines=()
    for run in $(seq "$RUNS"); do
        file="$WORK/$setup-$scenario.$run"
        lines+=("$(jq -r "$key" "$file.json") $file")
    done
    printf '%s\n' "${lines[@]}" | awk '{ print $1 }' | paste -sd ' ' >"$WORK/$setup-$scenario.runs"
    file=$(printf '%s\n' "${lines[@]}" | sort -g -k1,1 | awk '{ f[NR] = $2 } END { print f[int((NR + 1) / 2)] }')
    cp -- "$file.json" "$WORK/$setup-$scenario.json"
    cp -- "$file.cpu" "$WORK/$setup-$scenario.cpu"
}

# --- the table --------------------------------------------------------------------

field() { # field FILE JQ_EXPRESSION -> value, or "" when the file is missing
    if [[ -s "$1" ]]; then
        jq -r "$2 // empty" "$1"
    fi
}

# cpu_row RUN SETUP FILE: one row of a CPU table from a .cpu file written by strata_bench:
# | RUN | SETUP | seconds | brokers | strata bench | other processes | steal |.
cpu_row() {
    awk -v scenario="$1" -v setup="$2" \
        '{
             brokers = $5
             for (i = 6; i <= NF; i++) brokers = brokers " / " $i
             printf "| %s | %s | %.1f | %s | %.2f | %.2f | %.2f |\n", scenario, setup, $1, brokers, $2, $3, $4
         }' "$3"
}
