#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine (for tests and for trying the SLURM
# profile on a laptop). Needs root and Debian/Ubuntu packages `slurm-wlm munge` (installed by
# `install`). No systemd, no cgroups, no accounting database.
#
#   sudo tests/cluster/slurm_cluster.sh install   # apt-get install slurm-wlm munge (if missing)
#   sudo tests/cluster/slurm_cluster.sh start     # munged + slurmctld + slurmd, waits until idle
#   sudo tests/cluster/slurm_cluster.sh status    # sinfo / squeue
#   sudo tests/cluster/slurm_cluster.sh stop      # stops the daemons by PID, removes slurm.conf
#
# Everything the daemons write (state, spool, logs, PID files, munge key and socket) lives
# under $ETEM_SLURM_DIR (default /tmp/etem-slurm). The config itself must sit at the
# distribution default /etc/slurm/slurm.conf: the SLURM executor plugin clears SLURM_CONF
# before the job step's inner `srun`, so a config elsewhere is not found inside jobs. An
# existing /etc/slurm/slurm.conf that this script did not write is never touched (start fails).
#
# Knobs (environment): ETEM_SLURM_DIR, ETEM_SLURM_CPUS (CPUs the node advertises, default
# max(nproc, 4); more than the hardware is allowed, jobs then share cores),
# ETEM_SLURM_MEM_MB (node memory, default 90% of MemTotal), ETEM_SLURM_MIN_JOB_AGE [s]
# (default 300, must be >= 3x the plugin's init_seconds_before_status_checks for squeue).
set -euo pipefail

DIR=${ETEM_SLURM_DIR:-/tmp/etem-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by etem tests/cluster/slurm_cluster.sh"
HOST=$(hostname -s)

die() { echo "slurm_cluster: error: $*" >&2; exit 1; }
log() { echo "slurm_cluster: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (daemons, /etc/slurm/slurm.conf)"; }

cmd_install() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        log "slurm-wlm and munge already installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    log "installed: $(slurmctld -V)"
}

conf_is_ours() {  # written by this script for this $DIR
    [ -f "$CONF" ] && grep -qF "$MARKER" "$CONF" && grep -qxF "StateSaveLocation=$DIR/state" "$CONF"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    local cpus mem
    cpus=${ETEM_SLURM_CPUS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
    mem=${ETEM_SLURM_MEM_MB:-$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)}
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    local other
    other=$(sed -n 's/^StateSaveLocation=\(.*\)\/state$/\1/p' "$CONF" 2>/dev/null || true)
    if [ -n "$other" ] && [ "$other" != "$DIR" ] && pid_alive "$other/run/slurmctld.pid"; then
        die "another test cluster is running (state in $other): ETEM_SLURM_DIR=$other $0 stop"
    fi
    mkdir -p /etc/slurm
    cat > "$CONF.tmp" <<EOF
$MARKER
# Single-node test cluster; state under $DIR. Remove with: slurm_cluster.sh stop
ClusterName=etemtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no accounting database (sacct cannot see jobs: use the squeue status command)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
# finished jobs stay visible to squeue this long [s]
MinJobAge=${ETEM_SLURM_MIN_JOB_AGE:-300}
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    local m=$DIR/munge
    mkdir -p "$m"
    chown munge:munge "$m"
    chmod 0755 "$m"
    if [ ! -f "$m/munge.key" ]; then
        dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$m/munge.key"
    chmod 0400 "$m/munge.key"
    pid_alive "$DIR/run/munged.pid" && return 0
    runuser -u munge -- /usr/sbin/munged --force \
        --key-file="$m/munge.key" --socket="$m/munge.socket.2" \
        --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed"
    for _ in $(seq 50); do
        [ -S "$m/munge.socket.2" ] && [ -f "$m/munged.pid" ] && break
        sleep 0.1
    done
    cp "$m/munged.pid" "$DIR/run/munged.pid"
    munge -S "$m/munge.socket.2" -n </dev/null | unmunge -S "$m/munge.socket.2" >/dev/null \
        || die "munge round trip failed (see $m/munged.log)"
}

cmd_start() {
    need_root
    command -v slurmctld >/dev/null || die "slurm-wlm not installed (run: $0 install)"
    command -v munged >/dev/null || die "munge not installed (run: $0 install)"
    mkdir -p "$DIR"/{state,spool,log,run}
    chmod 0755 "$DIR"
    write_conf
    start_munge
    if ! pid_alive "$DIR/run/slurmctld.pid"; then
        # -c: clear old state (a fresh cluster each time), -i: ignore unreadable state files
        /usr/sbin/slurmctld -c -i
    fi
    if ! pid_alive "$DIR/run/slurmd.pid"; then
        /usr/sbin/slurmd
    fi
    local state=""
    for _ in $(seq 150); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
        case "$state" in idle|mixed|allocated) break ;; esac
        sleep 0.2
    done
    case "$state" in
        idle|mixed|allocated) log "cluster up: node $HOST $state, conf $CONF, state in $DIR" ;;
        *) log "node state '$state' after 30 s; logs:"; tail -n 20 "$DIR"/log/*.log >&2 || true
           die "cluster did not come up" ;;
    esac
}

stop_pid() {  # stop_pid NAME PIDFILE
    local pidfile=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$1 (pid $pid) did not stop on TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    need_root
    if conf_is_ours; then
        scancel --full --quiet --partition=debug 2>/dev/null || true
        # let slurmd end the jobs' processes before the daemons go
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pid slurmd "$DIR/run/slurmd.pid"
    stop_pid slurmctld "$DIR/run/slurmctld.pid"
    [ -f "$DIR/munge/munged.pid" ] && cp "$DIR/munge/munged.pid" "$DIR/run/munged.pid"
    stop_pid munged "$DIR/run/munged.pid"
    rm -f "$DIR/munge/munged.pid"
    if conf_is_ours; then
        rm -f "$CONF"
    fi
    log "stopped"
}

cmd_status() {
    for d in munged slurmctld slurmd; do
        if pid_alive "$DIR/run/$d.pid"; then echo "$d: running (pid $(cat "$DIR/run/$d.pid"))"
        else echo "$d: stopped"; fi
    done
    sinfo 2>/dev/null || true
    squeue 2>/dev/null || true
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
