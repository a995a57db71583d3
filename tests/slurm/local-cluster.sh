#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the cluster test and for trying
# workflow/profiles/slurm before a real cluster: munged, slurmctld and slurmd from Debian's
# slurm-wlm, running as root, with no accounting database (the executor plugin is told to
# poll squeue, and MinJobAge keeps finished jobs visible to it).
#
#   tests/slurm/local-cluster.sh install   # apt-get install slurm-wlm munge (root, Debian)
#   tests/slurm/local-cluster.sh start     # write /etc/slurm/slurm.conf, start the daemons
#   tests/slurm/local-cluster.sh stop
#
# The node advertises at least 8 CPUs, 256 GB and two `gpu` devices (plain files) whatever
# the machine has, so the profile's paper-sized requests (4 CPUs, 64 GB, --gpus=1) are
# scheduled on a small CPU-only test machine; nothing enforces them.
set -euo pipefail

STATE=${PRUNESCOPE_SLURM_STATE:-/var/tmp/prunescope-slurm}
CONF_DIR=/etc/slurm
MARKER="# written by prunescope tests/slurm/local-cluster.sh"

die() { echo "local-cluster.sh: $*" >&2; exit 1; }

install_packages() {
    [ "$(id -u)" -eq 0 ] || die "install needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    (( cpus < 8 )) && cpus=8
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)
    (( mem_mb < 262144 )) && mem_mb=262144
    if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf exists and was not written by this script; refusing to replace it"
    fi
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d"
    cat > "$CONF_DIR/slurm.conf" <<CONF
$MARKER
ClusterName=prunescope-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=60
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    cat > "$CONF_DIR/gres.conf" <<CONF
$MARKER
NodeName=$host Name=gpu File=$STATE/gpu[0-1]
CONF
    # Plain files stand in for device nodes; SLURM hands out their indices in
    # CUDA_VISIBLE_DEVICES as it would on a GPU node.
    touch "$STATE/gpu0" "$STATE/gpu1"
}

start() {
    [ "$(id -u)" -eq 0 ] || die "start needs root"
    command -v slurmctld >/dev/null || die "slurmctld not found; run '$0 install' first"
    write_config
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! pgrep -x munged >/dev/null; then
        [ -s /etc/munge/munge.key ] || { mungekey --create --force && chown munge:munge /etc/munge/munge.key; }
        runuser -u munge -- /usr/sbin/munged
    fi
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo --noheader --states=idle,mixed,allocated -o %N 2>/dev/null | grep -q .; then
            sinfo
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$STATE"/*.log >&2 || true
    die "the node did not come up within 60 s; logs above"
}

stop() {
    pkill -x slurmd || true
    pkill -x slurmctld || true
    for _ in $(seq 40); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
        sleep 0.5
    done
    rm -rf "$STATE"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 install|start|stop" ;;
esac
