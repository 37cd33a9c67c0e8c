#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for CI and for trying the Slurm profile.
#
# Installs slurm-wlm and munge from Debian when missing (as root), writes a slurm.conf for
# localhost sized from the machine's cores and memory, starts munged, slurmctld and slurmd,
# and waits until the node is idle. Safe to run twice: running daemons with an unchanged
# configuration are left alone; a changed configuration restarts them.
#
# Containers have no usable cgroups, so processes are tracked by /proc (linuxproc), there
# is no task plugin, and memory limits are enforced by polling (jobacct_gather/linux with
# OverMemoryKill). There is no accounting database, so sacct is unusable and job status
# comes from squeue: MinJobAge keeps finished jobs visible there long enough.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
SPOOL=/var/spool/slurm
LOGS=/var/log/slurm
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-60}

say() { echo "local_slurm: $*"; }
die() {
  echo "local_slurm: error: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts system daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating a munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 20); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
  done
  munge -n </dev/null | unmunge >/dev/null || die "munged did not start"
fi

# ---------------------------------------------------------------- slurm.conf
NODE=$(hostname -s)
CPUS=$(nproc)
# What slurmd detects, so the node is never drained for claiming more than it has.
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$MEM" ] || die "slurmd -C did not report the memory"
TOPO=$(slurmd -C | sed -n '1s/^NodeName=[^ ]* //p' | sed 's/ RealMemory=[0-9]*//')

new_conf=$(
  cat <<EOF
# Written by scripts/local_slurm.sh: one node, localhost, no cgroups, no accounting.
ClusterName=passerelle
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=20
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 $TOPO RealMemory=$MEM State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)
# CPUs from slurmd -C and nproc agree on a plain machine; say so when they do not.
grep -q "CPUs=$CPUS " <<<"$TOPO " || say "note: slurmd sees $TOPO, nproc says $CPUS"

install -d -m 0755 "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" >"$CONF"
  changed=1
fi

running() { pgrep -x "$1" >/dev/null; }

stop() {
  local name=$1
  if running "$name"; then
    say "stopping $name (configuration changed)"
    pkill -x "$name" || true
    for _ in $(seq 1 20); do running "$name" || break; sleep 0.5; done
  fi
}

if [ "$changed" = 1 ]; then
  stop slurmd
  stop slurmctld
fi
if ! running slurmctld; then
  say "starting slurmctld"
  /usr/sbin/slurmctld
fi
if ! running slurmd; then
  say "starting slurmd"
  /usr/sbin/slurmd
fi

# ---------------------------------------------------------------- wait for the node
deadline=$((SECONDS + TIMEOUT))
state=""
while [ $SECONDS -lt $deadline ]; do
  state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
  case "$state" in
    idle | mixed | allocated) break ;;
    drain* | down*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
case "$state" in
  idle | mixed | allocated) ;;
  *) die "node $NODE is '${state:-unknown}' after ${TIMEOUT}s; see $LOGS/slurmd.log and $LOGS/slurmctld.log" ;;
esac
say "node $NODE is $state ($CPUS CPUs, $MEM MB); partition main"
