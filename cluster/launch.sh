#!/usr/bin/env bash
# Start and stop a dask.distributed cluster (one scheduler, single-threaded workers on one or
# more hosts, optionally one GPU worker per GPU) for `lpbench sweep run --scheduler ADDRESS`.
# Remote hosts are reached with ssh and must have the same paths (python, run directory).
# Run `launch.sh --help` for the options.
set -euo pipefail

PROG=${0##*/}

usage() {
    cat <<EOF
Usage:
  $PROG start [OPTIONS]    start a scheduler here and workers on the listed hosts
  $PROG stop [--run-dir DIR] [--ssh CMD]
                           stop every process recorded in the run directory (with the
                           ssh command that start used, unless --ssh is given)
  $PROG status [--run-dir DIR] [--python PATH]
                           print the scheduler address and the connected workers
  $PROG --help

Every worker process runs one thread (--nthreads 1) with OMP_NUM_THREADS=1,
MKL_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1 and NUMEXPR_NUM_THREADS=1.

Options of start:
  --hosts H1,H2,...      hosts for CPU workers (default: localhost). Hosts other than this
                         one are reached with ssh, non-interactively.
  --nworkers K           CPU worker processes per host (default: the host's CPU count, nproc;
                         0: no CPU workers)
  --memory-limit M       memory limit of each worker process, as dask takes it: 4GB, 0.25,
                         auto (default: auto = host memory / processes of that group)
  --gpu-hosts H1,H2,...  hosts for GPU workers: one worker per GPU, with --resources GPU=1
                         and CUDA_VISIBLE_DEVICES set to that GPU (a host may also be in --hosts)
  --gpus I,J,...         GPU indices to use on every GPU host (default: all GPUs that
                         nvidia-smi lists on that host)
  --port P               scheduler port (default: 8786)
  --dashboard-port D     scheduler dashboard port (default: 8787; 0: no dashboard)
  --scheduler-host ADDR  address the scheduler binds to and workers connect to (default:
                         127.0.0.1 when all workers are on this host, else \`hostname -f\`)
  --interface IF         network interface (eth0, ib0, ...) for scheduler and workers;
                         takes precedence over --scheduler-host
  --worker-port-base N   fixed worker ports instead of random ones: CPU workers of a host get
                         N..N+K-1, the GPU worker of GPU g gets N+500+g
  --nanny-port-base N    the same for the nanny processes
  --python PATH          python with lpbench and distributed, same path on every host
                         (default: \$VIRTUAL_ENV/bin/python, else python3 on PATH)
  --env NAME=VALUE       extra environment variable for the workers (repeatable).
                         LPBENCH_DATA_DIR, LPBENCH_MIRROR and LPBENCH_OFFLINE are passed on
                         when set here.
  --run-dir DIR          where pid files, logs and worker scratch go, same path on every host
                         (default: \$LPBENCH_CLUSTER_DIR, else \$HOME/.lpbench-cluster)
  --ssh CMD              ssh command (default: "ssh -o BatchMode=yes -o ConnectTimeout=10")
  --wait S               wait up to S seconds for every worker to connect (default: 120; 0: no)
  --dry-run              print the scheduler command and each host's start script, start nothing

The scheduler runs on this host. lpbench and distributed must have the same versions on every
worker host as here; start checks this and stops on a mismatch.

Examples:
  $PROG start --nworkers 4
  $PROG start --hosts node1,node2 --nworkers 32 --memory-limit 3GB --gpu-hosts gpu1 \\
      --env LPBENCH_MIRROR=/shared/lpbench-mirror --env LPBENCH_DATA_DIR=/shared/lpbench-data
  lpbench sweep run spec.toml --scheduler "\$(cat ~/.lpbench-cluster/address)"
  $PROG stop
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 2
}
log() { echo "$PROG: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# functions that also run on the worker hosts (shipped there with `declare -f`)

# _start_proc PIDFILE LOGFILE COMMAND...: start COMMAND detached (own session, so that its
# group id is its pid), append its output to LOGFILE and write its pid to PIDFILE.
_start_proc() {
    local pidfile=$1 logfile=$2
    shift 2
    if [[ -s $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null; then
        echo "already running (pid $(<"$pidfile"), $pidfile)" >&2
        return 1
    fi
    if command -v setsid >/dev/null 2>&1; then
        nohup setsid "$@" >>"$logfile" 2>&1 </dev/null &
    else
        nohup "$@" >>"$logfile" 2>&1 </dev/null &
    fi
    echo "$!" >"$pidfile"
}

# _kill_pidfile PIDFILE: stop the dask process in PIDFILE (SIGTERM, then SIGKILL after 15 s) and
# whatever is left of its process group (nannies and worker processes), then remove PIDFILE.
_kill_pidfile() {
    local pidfile=$1 pid i
    if [[ ! -s $pidfile ]]; then
        echo "no pid file $pidfile on $(hostname)" >&2
        return 0
    fi
    pid=$(<"$pidfile")
    if [[ ! $pid =~ ^[0-9]+$ ]]; then
        echo "ignoring $pidfile: not a pid" >&2
        rm -f "$pidfile"
        return 0
    fi
    # only a process that is still a dask scheduler or worker (pids get reused)
    if kill -0 "$pid" 2>/dev/null && ps -o args= -p "$pid" | grep -q 'distributed\.cli\.dask_'; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 75; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "pid $pid did not stop on SIGTERM; sending SIGKILL to its group" >&2
        fi
        # the group of the session started by _start_proc: its id is $pid
        if kill -0 -- "-$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            sleep 1
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
# helpers

THIS_HOSTS=()
init_this_hosts() {
    THIS_HOSTS=(localhost 127.0.0.1 ::1 "$(hostname)")
    local h
    h=$(hostname -s 2>/dev/null || true)
    [[ -z $h ]] || THIS_HOSTS+=("$h")
    h=$(hostname -f 2>/dev/null || true)
    [[ -z $h ]] || THIS_HOSTS+=("$h")
}

is_local_host() {
    local h
    for h in "${THIS_HOSTS[@]}"; do
        [[ $1 == "$h" ]] && return 0
    done
    return 1
}

# a name for pid and log files: this host's short name, or the host as given without user@
host_label() {
    local h=${1#*@}
    if is_local_host "$h"; then
        h=$(hostname -s 2>/dev/null || hostname)
    fi
    echo "${h//[^A-Za-z0-9._-]/_}"
}

SSH_CMD="ssh -o BatchMode=yes -o ConnectTimeout=10"

# run_on HOST SCRIPT: run the bash SCRIPT on HOST (locally, or through ssh), script on stdin
run_on() {
    local host=$1 script=$2 ssh_words
    if is_local_host "$host"; then
        bash -s <<<"$script"
    else
        read -ra ssh_words <<<"$SSH_CMD"
        "${ssh_words[@]}" "$host" bash -s <<<"$script"
    fi
}

split_list() { # split_list "a,b,,a" -> unique non-empty items, one a line
    local item seen=","
    local -a items
    IFS=, read -ra items <<<"$1"
    for item in "${items[@]+"${items[@]}"}"; do
        item=${item//[[:space:]]/}
        [[ -z $item || $seen == *",$item,"* ]] && continue
        seen+="$item,"
        echo "$item"
    done
}

pkg_versions() { # "LPBENCH DISTRIBUTED" for $PY, "-" for a missing package
    "$PY" -c 'import importlib.metadata as m
def v(p):
    try:
        return m.version(p)
    except m.PackageNotFoundError:
        return "-"
print(v("lpbench"), v("distributed"))' </dev/null
}

resolve_python() {
    if [[ -z $PY ]]; then
        if [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/python ]]; then
            PY=$VIRTUAL_ENV/bin/python
        else
            PY=$(command -v python3 || true)
        fi
    fi
    [[ -n $PY ]] || die "no python found; pass --python"
    [[ $PY == /* ]] || PY=$(command -v "$PY" || true)
    [[ -n $PY && -x $PY ]] || die "--python: not an executable: $PY"
}

resolve_run_dir() {
    [[ -n $RUN_DIR ]] || RUN_DIR=${LPBENCH_CLUSTER_DIR:-$HOME/.lpbench-cluster}
    if [[ $1 == create ]]; then
        mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/work"
    fi
    [[ -d $RUN_DIR ]] || die "no run directory $RUN_DIR"
    RUN_DIR=$(cd "$RUN_DIR" && pwd)
}

# ---------------------------------------------------------------------------------------------
# start

# host_header ROLE HOST: the variables of the start script of HOST's CPU (ROLE=cpu) or GPU
# (ROLE=gpu) workers; host_script ROLE HOST: the whole script. It prints one line
# "started NAME PROCESSES" per pid file it wrote.
host_header() {
    local role=$1 host=$2 kv
    echo 'set -euo pipefail'
    printf 'ROLE=%q LABEL=%q PY=%q RUN_DIR=%q ADDR=%q\n' \
        "$role" "$(host_label "$host")" "$PY" "$RUN_DIR" "$ADDR"
    printf 'NWORKERS=%q MEMORY_LIMIT=%q GPUS=%q IFACE=%q WPORT=%q NPORT=%q\n' \
        "$NWORKERS" "$MEMORY_LIMIT" "$GPUS" "$IFACE" "$WORKER_PORT_BASE" "$NANNY_PORT_BASE"
    printf 'EXPECT_LPBENCH=%q EXPECT_DISTRIBUTED=%q\n' "$LOCAL_LPBENCH" "$LOCAL_DISTRIBUTED"
    printf 'WORKER_ENV=('
    for kv in "${WORKER_ENV[@]+"${WORKER_ENV[@]}"}"; do printf ' %q' "$kv"; done
    printf ' )\n'
}

host_script() {
    host_header "$@"
    host_body
}

host_body() {
    declare -f _start_proc pkg_versions
    cat <<'BODY'
here=$(hostname)
fail() { echo "launch.sh [$here]: error: $*" >&2; exit 1; }
[[ -x $PY ]] || fail "no python at $PY (the same path as on the launching host is needed)"
versions=$(pkg_versions) || fail "$PY cannot run"
read -r have_lpbench have_distributed <<<"$versions"
[[ $have_lpbench != - ]] || fail "lpbench is not installed for $PY"
[[ $have_distributed != - ]] || fail "distributed is not installed for $PY"
if [[ $EXPECT_LPBENCH != - && $have_lpbench != "$EXPECT_LPBENCH" ]]; then
    fail "lpbench $have_lpbench here, $EXPECT_LPBENCH on the launching host"
fi
if [[ $have_distributed != "$EXPECT_DISTRIBUTED" ]]; then
    fail "distributed $have_distributed here, $EXPECT_DISTRIBUTED on the launching host"
fi
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/work"
cd "$RUN_DIR"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1
for kv in "${WORKER_ENV[@]+"${WORKER_ENV[@]}"}"; do export "${kv?}"; done
common=(--nthreads 1 --memory-limit "$MEMORY_LIMIT" --death-timeout 120 --no-dashboard)
[[ -z $IFACE ]] || common+=(--interface "$IFACE")
if [[ $ROLE == cpu ]]; then
    k=${NWORKERS:-$(nproc)}
    [[ $k =~ ^[1-9][0-9]*$ ]] || fail "bad worker count $k"
    name=$LABEL-cpu
    args=(--nworkers "$k" --name "$name" --local-directory "$RUN_DIR/work/$name")
    if [[ -n $WPORT$NPORT ]]; then
        ((k <= 500)) || fail "at most 500 CPU workers a host with port bases"
    fi
    # dask takes a range FIRST:LAST only with LAST > FIRST
    if [[ -n $WPORT ]]; then
        ((k == 1)) && args+=(--worker-port "$WPORT") || args+=(--worker-port "$WPORT:$((WPORT + k - 1))")
    fi
    if [[ -n $NPORT ]]; then
        ((k == 1)) && args+=(--nanny-port "$NPORT") || args+=(--nanny-port "$NPORT:$((NPORT + k - 1))")
    fi
    _start_proc "$RUN_DIR/pids/$name.pid" "$RUN_DIR/logs/$name.log" \
        "$PY" -m distributed.cli.dask_worker "$ADDR" "${common[@]}" "${args[@]}" ||
        fail "could not start $name"
    echo "started $name $k"
else
    if [[ -z $GPUS ]]; then
        GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader </dev/null | tr -d ' ' | paste -sd, -) ||
            fail "nvidia-smi could not list the GPUs; pass --gpus"
    fi
    [[ -n $GPUS ]] || fail "no GPU found (nvidia-smi lists none); pass --gpus"
    IFS=, read -ra gpu_list <<<"$GPUS"
    for g in "${gpu_list[@]}"; do
        [[ $g =~ ^[A-Za-z0-9-]+$ ]] || fail "bad GPU id '$g'"
        if [[ -n $WPORT$NPORT && ! $g =~ ^[0-9]+$ ]]; then
            fail "port bases need numeric GPU indices, got '$g'"
        fi
        name=$LABEL-gpu$g
        args=(--nworkers 1 --name "$name" --resources GPU=1 --local-directory "$RUN_DIR/work/$name")
        [[ -z $WPORT ]] || args+=(--worker-port "$((WPORT + 500 + g))")
        [[ -z $NPORT ]] || args+=(--nanny-port "$((NPORT + 500 + g))")
        _start_proc "$RUN_DIR/pids/$name.pid" "$RUN_DIR/logs/$name.log" \
            env "CUDA_VISIBLE_DEVICES=$g" "$PY" -m distributed.cli.dask_worker "$ADDR" \
            "${common[@]}" "${args[@]}" || fail "could not start $name"
        echo "started $name 1"
    done
fi
BODY
}

scheduler_alive() {
    local f=$RUN_DIR/pids/scheduler.pid
    [[ -s $f ]] && kill -0 "$(<"$f")" 2>/dev/null
}

cmd_start() {
    local hosts_arg=localhost gpu_hosts_arg="" scheduler_host="" wait_s=120 dry_run=0
    local port=8786 dash_port=8787
    while (($#)); do
        case $1 in
        --hosts) hosts_arg=${2?--hosts needs a value}; shift 2 ;;
        --nworkers) NWORKERS=${2?--nworkers needs a value}; shift 2 ;;
        --memory-limit) MEMORY_LIMIT=${2?--memory-limit needs a value}; shift 2 ;;
        --gpu-hosts) gpu_hosts_arg=${2?--gpu-hosts needs a value}; shift 2 ;;
        --gpus) GPUS=${2?--gpus needs a value}; shift 2 ;;
        --port) port=${2?--port needs a value}; shift 2 ;;
        --dashboard-port) dash_port=${2?--dashboard-port needs a value}; shift 2 ;;
        --scheduler-host) scheduler_host=${2?--scheduler-host needs a value}; shift 2 ;;
        --interface) IFACE=${2?--interface needs a value}; shift 2 ;;
        --worker-port-base) WORKER_PORT_BASE=${2?--worker-port-base needs a value}; shift 2 ;;
        --nanny-port-base) NANNY_PORT_BASE=${2?--nanny-port-base needs a value}; shift 2 ;;
        --python) PY=${2?--python needs a value}; shift 2 ;;
        --env) WORKER_ENV+=("${2?--env needs a value}"); shift 2 ;;
        --run-dir) RUN_DIR=${2?--run-dir needs a value}; shift 2 ;;
        --ssh) SSH_CMD=${2?--ssh needs a value}; shift 2 ;;
        --wait) wait_s=${2?--wait needs a value}; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "start: unknown option '$1' (see --help)" ;;
        esac
    done
    local n
    for n in "$port" "$dash_port" "$wait_s" ${NWORKERS:+"$NWORKERS"} \
        ${WORKER_PORT_BASE:+"$WORKER_PORT_BASE"} ${NANNY_PORT_BASE:+"$NANNY_PORT_BASE"}; do
        [[ $n =~ ^[0-9]+$ ]] || die "not a non-negative integer: '$n'"
    done
    local kv
    for kv in "${WORKER_ENV[@]+"${WORKER_ENV[@]}"}"; do
        [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, got '$kv'"
    done
    for kv in LPBENCH_DATA_DIR LPBENCH_MIRROR LPBENCH_OFFLINE; do
        [[ -z ${!kv:-} ]] || WORKER_ENV=("$kv=${!kv}" "${WORKER_ENV[@]+"${WORKER_ENV[@]}"}")
    done

    local -a cpu_hosts=() gpu_hosts=()
    if [[ $NWORKERS != 0 ]]; then
        mapfile -t cpu_hosts < <(split_list "$hosts_arg")
    fi
    [[ -z $gpu_hosts_arg ]] || mapfile -t gpu_hosts < <(split_list "$gpu_hosts_arg")
    ((${#cpu_hosts[@]} + ${#gpu_hosts[@]})) || die "no workers to start (--nworkers 0 and no --gpu-hosts)"

    resolve_python
    if ((dry_run)); then
        RUN_DIR=$(realpath -m "${RUN_DIR:-${LPBENCH_CLUSTER_DIR:-$HOME/.lpbench-cluster}}")
    else
        resolve_run_dir create
    fi
    local versions
    versions=$(pkg_versions) || die "$PY cannot run"
    read -r LOCAL_LPBENCH LOCAL_DISTRIBUTED <<<"$versions"
    [[ $LOCAL_DISTRIBUTED != - ]] || die "distributed is not installed for $PY"
    [[ $LOCAL_LPBENCH != - ]] ||
        log "warning: lpbench is not installed for $PY here, so worker versions are not compared"

    local h all_local=1
    for h in "${cpu_hosts[@]+"${cpu_hosts[@]}"}" "${gpu_hosts[@]+"${gpu_hosts[@]}"}"; do
        is_local_host "$h" || all_local=0
    done
    if [[ -z $scheduler_host ]]; then
        if ((all_local)); then
            scheduler_host=127.0.0.1
        else
            scheduler_host=$(hostname -f 2>/dev/null || hostname)
            if [[ -z $IFACE ]] && getent hosts "$scheduler_host" 2>/dev/null | grep -q '^127\.'; then
                log "warning: $scheduler_host resolves to a loopback address here; remote workers" \
                    "may not reach it (pass --interface or --scheduler-host)"
            fi
        fi
    fi

    local -a sched_args=(--port "$port" --scheduler-file "$RUN_DIR/scheduler.json")
    if ((dash_port)); then
        sched_args+=(--dashboard-address ":$dash_port")
    else
        sched_args+=(--no-dashboard)
    fi
    if [[ -n $IFACE ]]; then
        sched_args+=(--interface "$IFACE")
    else
        sched_args+=(--host "$scheduler_host")
    fi

    if ((dry_run)); then
        ADDR="tcp://$scheduler_host:$port"
        [[ -z $IFACE ]] || ADDR="tcp://<address of $IFACE>:$port"
        echo "# scheduler, on this host ($(hostname)):"
        printf '%q ' "$PY" -m distributed.cli.dask_scheduler "${sched_args[@]}"
        echo
        for h in "${cpu_hosts[@]+"${cpu_hosts[@]}"}"; do
            echo "# CPU workers on $h ($(is_local_host "$h" && echo local || echo "via $SSH_CMD")):"
            host_header cpu "$h"
        done
        for h in "${gpu_hosts[@]+"${gpu_hosts[@]}"}"; do
            echo "# GPU workers on $h ($(is_local_host "$h" && echo local || echo "via $SSH_CMD")):"
            host_header gpu "$h"
        done
        echo "# the rest of each host's script:"
        host_body
        return 0
    fi

    scheduler_alive && die "a scheduler of this run directory is running (pid $(<"$RUN_DIR/pids/scheduler.pid")); run '$PROG stop --run-dir $RUN_DIR' first"
    rm -f "$RUN_DIR/scheduler.json" "$RUN_DIR/address" "$RUN_DIR/groups"
    echo "$SSH_CMD" >"$RUN_DIR/ssh" # for stop
    _start_proc "$RUN_DIR/pids/scheduler.pid" "$RUN_DIR/logs/scheduler.log" \
        env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" -m distributed.cli.dask_scheduler "${sched_args[@]}"
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -s $RUN_DIR/scheduler.json ]] && break
        scheduler_alive || break
        sleep 0.2
    done
    if [[ ! -s $RUN_DIR/scheduler.json ]]; then
        tail -n 20 "$RUN_DIR/logs/scheduler.log" >&2 || true
        _kill_pidfile "$RUN_DIR/pids/scheduler.pid"
        die "the scheduler did not start (log: $RUN_DIR/logs/scheduler.log)"
    fi
    sleep 0.2 # the file is written in one go, but give the writer a moment
    ADDR=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' \
        "$RUN_DIR/scheduler.json")
    echo "$ADDR" >"$RUN_DIR/address"
    log "scheduler $ADDR (pid $(<"$RUN_DIR/pids/scheduler.pid"), log $RUN_DIR/logs/scheduler.log)"

    local expected=0 failed=0 out rc role word name count
    local -a jobs=()
    for h in "${cpu_hosts[@]+"${cpu_hosts[@]}"}"; do jobs+=("cpu $h"); done
    for h in "${gpu_hosts[@]+"${gpu_hosts[@]}"}"; do jobs+=("gpu $h"); done
    for kv in "${jobs[@]}"; do
        role=${kv%% *}
        h=${kv#* }
        rc=0
        out=$(run_on "$h" "$(host_script "$role" "$h")") || rc=$?
        while read -r word name count; do
            [[ $word == started ]] || continue
            echo "$h $name" >>"$RUN_DIR/groups"
            expected=$((expected + count))
            log "$h: started $name ($count process(es), log $RUN_DIR/logs/$name.log on $h)"
        done <<<"$out"
        if ((rc)); then
            log "starting the $role workers on $h failed (exit status $rc)"
            failed=1
        fi
    done
    if ((failed)); then
        log "stopping what was started"
        cmd_stop --run-dir "$RUN_DIR" || true
        exit 1
    fi

    if ((wait_s)); then
        log "waiting up to ${wait_s}s for $expected worker(s) to connect"
        # local pid files: a local worker group that exits ends the wait early
        local -a local_pids=()
        while read -r h name; do
            is_local_host "$h" && local_pids+=("$RUN_DIR/pids/$name.pid")
        done <"$RUN_DIR/groups"
        if ! "$PY" - "$RUN_DIR/scheduler.json" "$expected" "$wait_s" \
            "${local_pids[@]+"${local_pids[@]}"}" <<'PYEOF'; then
import os, sys, time
from distributed import Client
expected, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
with Client(scheduler_file=sys.argv[1], timeout=30) as client:
    while True:
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        if n >= expected:
            sys.exit(0)
        for pidfile in sys.argv[4:]:
            pid = int(open(pidfile).read())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"the worker process {pid} ({pidfile}) has exited", file=sys.stderr)
                sys.exit(1)
        if time.monotonic() > deadline:
            print(f"only {n} of {expected} workers connected", file=sys.stderr)
            sys.exit(1)
        time.sleep(1)
PYEOF
            log "not every worker connected; see the logs under $RUN_DIR/logs on each host." \
                "The cluster is left running: '$PROG status' or '$PROG stop --run-dir $RUN_DIR'."
            exit 1
        fi
    fi
    log "cluster up: $expected worker process(es)"
    echo "scheduler: $ADDR"
    if ((dash_port)); then
        echo "dashboard: http://${ADDR#tcp://}" | sed "s/:$port\$/:$dash_port/"
    fi
    echo "run:       lpbench sweep run SPEC.toml --scheduler $ADDR"
    echo "stop:      $0 stop --run-dir $RUN_DIR"
}

# ---------------------------------------------------------------------------------------------
# stop, status

cmd_stop() {
    local ssh_given=0
    while (($#)); do
        case $1 in
        --run-dir) RUN_DIR=${2?--run-dir needs a value}; shift 2 ;;
        --ssh) SSH_CMD=${2?--ssh needs a value}; ssh_given=1; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "stop: unknown option '$1' (see --help)" ;;
        esac
    done
    resolve_run_dir exists
    if ((!ssh_given)) && [[ -s $RUN_DIR/ssh ]]; then
        SSH_CMD=$(<"$RUN_DIR/ssh")
    fi
    local status=0 host name
    if [[ -f $RUN_DIR/groups ]]; then
        while read -r host name; do
            [[ -n $host ]] || continue
            log "stopping $name on $host"
            run_on "$host" "$(declare -f _kill_pidfile)
_kill_pidfile $(printf %q "$RUN_DIR/pids/$name.pid")" </dev/null || {
                log "could not stop $name on $host"
                status=1
            }
        done <"$RUN_DIR/groups"
    fi
    if [[ -s $RUN_DIR/pids/scheduler.pid ]]; then
        log "stopping the scheduler"
        _kill_pidfile "$RUN_DIR/pids/scheduler.pid"
    fi
    if ((status)); then
        log "some workers could not be stopped; $RUN_DIR/groups is kept"
    else
        rm -f "$RUN_DIR/groups" "$RUN_DIR/address" "$RUN_DIR/scheduler.json" "$RUN_DIR/ssh"
        log "stopped"
    fi
    return "$status"
}

cmd_status() {
    while (($#)); do
        case $1 in
        --run-dir) RUN_DIR=${2?--run-dir needs a value}; shift 2 ;;
        --python) PY=${2?--python needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "status: unknown option '$1' (see --help)" ;;
        esac
    done
    resolve_run_dir exists
    resolve_python
    scheduler_alive || die "no scheduler running for $RUN_DIR"
    echo "scheduler: $(<"$RUN_DIR/address") (pid $(<"$RUN_DIR/pids/scheduler.pid"))"
    "$PY" - "$RUN_DIR/scheduler.json" <<'PYEOF'
import sys
from distributed import Client
with Client(scheduler_file=sys.argv[1], timeout=10) as client:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    gpu = sum(1 for w in workers if w.get("resources", {}).get("GPU"))
    threads = sorted({w["nthreads"] for w in workers})
    print(f"workers:   {len(workers)} ({gpu} with GPU=1), threads per worker: {threads}")
PYEOF
}

# ---------------------------------------------------------------------------------------------

NWORKERS="" MEMORY_LIMIT=auto GPUS="" IFACE="" WORKER_PORT_BASE="" NANNY_PORT_BASE=""
PY="" RUN_DIR="" ADDR="" LOCAL_LPBENCH="" LOCAL_DISTRIBUTED=""
WORKER_ENV=()

main() {
    (($#)) || { usage >&2; exit 2; }
    init_this_hosts
    local cmd=$1
    shift
    case $cmd in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
    esac
}

main "$@"
