#!/usr/bin/env bash
# A one-node Slurm on this machine, for the launcher tests and for trying `plasticity reproduce --launcher slurm`.
#   bash tools/slurm_local.sh start    install slurm-wlm and munge when missing (apt, as root), start munged, slurmctld, slurmd
#   bash tools/slurm_local.sh stop     stop the three daemons
#   bash tools/slurm_local.sh status   sinfo, or exit 1 when the cluster is not up
# One node with this machine's CPUs in one default partition `debug`; no accounting (sacct does not work: read job
# states with squeue / scontrol, as plasticity_nb.launch does). Needs root (the daemons' folders and users).
set -euo pipefail
STATE=/var/spool/plasticity-slurm
conf=/etc/slurm/slurm.conf
need_root() { [ "$(id -u)" = 0 ] || { echo "slurm_local.sh: needs root (starts munged, slurmctld, slurmd)" >&2; exit 2; }; }
install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  echo "[slurm] installing slurm-wlm and munge (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}
write_conf() {
  local host cpus mem; host=$(hostname -s); cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm
  cat > "$conf" <<CONF
ClusterName=plasticity
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}
start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge; chown munge:munge /run/munge /var/lib/munge /var/log/munge
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null
}
up() { sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mix|alloc'; }
case "${1:-}" in
  start)
    need_root; install; start_munge; write_conf
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do up && break; sleep 0.5; done
    up || { echo "slurm_local.sh: the node did not come up; see /var/log/slurm/" >&2; exit 1; }
    scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
    sinfo ;;
  stop)
    need_root
    for d in slurmd slurmctld; do pkill -x "$d" 2>/dev/null || true; done
    for _ in $(seq 40); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.25; done
    echo "[slurm] stopped" ;;
  status) up && sinfo ;;
  *) echo "usage: bash tools/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
