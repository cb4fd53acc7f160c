#!/usr/bin/env bash
# The local development cluster: a real SLURM 22.05 (Debian's slurm-wlm) with two nodes on this
# host, four fake GPUs each, two partitions, a few unix test users, and real accounting: slurmdbd
# on a MariaDB (both from Debian) with the cluster, an account and every test user's association.
#
#   dev/cluster.sh up      install what is missing, write the config, start munged/MariaDB/slurmdbd/
#                          slurmctld/slurmd, add the associations, wait until both nodes are idle
#                          (idempotent: safe to run again)
#   dev/cluster.sh down    stop the daemons (the state dir stays)
#   dev/cluster.sh status  sinfo + squeue
#
# Everything lives under $CARME_DEV_STATE (default /var/lib/carme-dev); /etc/slurm/*.conf are
# symlinks into it so every SLURM command (as root or as a user) finds the same cluster.
# Must run as root on Debian 12. Fails loudly: a cluster that does not come up is an error.
set -euo pipefail

STATE=${CARME_DEV_STATE:-/var/lib/carme-dev}
NODES=(carme-n1 carme-n2)
NODE_PORTS=(6818 6819)
# typed GPUs as gres, per node "type:count ...", in device order: carme-n1 has 4 x a100, carme-n2 2 x a100
# and 4 MIG-like slices 1g.10gb; each GPU is its own character device nvidia<i> (i counts across types,
# so a job's CUDA_VISIBLE_DEVICES names the devices of the types it got)
NODE_GPUS=("a100:4" "a100:2 1g.10gb:4")
# declared, not real (SlurmdParameters=config_overrides): enough for the scale tests' 200 tiny servers
# (a CPU-only server takes min_cpus 1 and min_memory_mb 1024 of carme.example.yaml)
CPUS_PER_NODE=128
MEM_PER_NODE_MB=262144
# name uid: the same numbers the test LDAP directory (dev/ldap.sh) uses (uidNumber), as sssd/nslcd would
TEST_USERS=("alice 10001" "bob 10002" "carol 10003" "dave 10004" "erin 10005" "admin 10010")
# the scale tests' and benchmarks' users load01..load50 (uid 10101..10150; unix accounts and SLURM
# associations only, no LDAP entry: their hubs use the dummy authenticator)
LOAD_USERS=50
DBD_PORT=6830     # slurmdbd (6817 slurmctld, 6818/6819 the slurmds)
MARIADB_PORT=3307 # the dev cluster's own MariaDB, on 127.0.0.1 only
ACCOUNT=carme-dev # the SLURM account every test user (and root) is associated with
# each node's "local SSD" (TmpDisk, MB): the directory carme.scratch.node_dir of carme.example.yaml names
NODE_TMP_MB=(100000 50000)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CARME=/opt/carme/venv/bin/carme  # dev/install.sh puts it there

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

install_packages() {
    local missing=()
    for pkg in slurm-wlm munge bubblewrap slurmdbd mariadb-server; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

make_users() {
    getent group carme-users >/dev/null || groupadd -g 10000 carme-users
    local entry name uid
    for entry in "${TEST_USERS[@]}"; do
        read -r name uid <<<"$entry"
        if ! getent passwd "$name" >/dev/null; then
            useradd -m -u "$uid" -g carme-users -s /bin/bash "$name"
            log "created unix user $name ($uid)"
        fi
        chmod 0750 "/home/$name"
    done
    local i
    for ((i = 1; i <= LOAD_USERS; i++)); do
        name=$(printf 'load%02d' "$i")
        getent passwd "$name" >/dev/null || useradd -m -u $((10100 + i)) -g carme-users -s /bin/bash "$name"
        chmod 0750 "/home/$name"
    done
}

node_gpu_count() {  # all GPUs of node number $1
    local spec n=0
    for spec in ${NODE_GPUS[$1]}; do n=$((n + ${spec##*:})); done
    echo "$n"
}

node_gres() {  # slurm.conf Gres= of node number $1: gpu:a100:2,gpu:1g.10gb:4
    local spec out=()
    for spec in ${NODE_GPUS[$1]}; do out+=("gpu:$spec"); done
    (IFS=,; echo "${out[*]}")
}

make_fake_gpus() {
    # gres.conf File= must name character devices; these are clones of /dev/null (1,3).
    local node i n
    for n in "${!NODES[@]}"; do
        node=${NODES[$n]}
        mkdir -p "$STATE/dev/$node"
        for ((i = 0; i < $(node_gpu_count "$n"); i++)); do
            [ -c "$STATE/dev/$node/nvidia$i" ] || mknod -m 0666 "$STATE/dev/$node/nvidia$i" c 1 3
        done
    done
}

write_config() {
    local host
    host=$(hostname -s)
    mkdir -p "$STATE"/{slurmctld,slurmd,run,log,etc}
    cat >"$STATE/etc/slurm.conf.new" <<EOF
# Written by dev/cluster.sh: the Carme development cluster. Do not edit; edit the script.
ClusterName=carme-dev
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu,gres/gpu:a100,gres/gpu:1g.10gb
AccountingStorageEnforce=associations,limits,qos,safe
PriorityType=priority/multifactor
# GPU-hour budgets per month (GrpTRESMins): usage is cleared on the 1st and does not decay before;
# usage is recalculated every minute (so sshare follows a running job closely)
PriorityUsageResetPeriod=MONTHLY
PriorityDecayHalfLife=0
PriorityCalcPeriod=1
# the association's and the QOS's priority count (Carme's role QOS and per-user priority)
PriorityWeightAssoc=1000
PriorityWeightQOS=1000
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# batch_sched_delay=0: a submitted job starts at the controller's next scheduling tick (<= 1 s)
# instead of waiting up to 3 s (SLURM's default) for the backfill pass: an interactive spawn waits on it
SchedulerParameters=bf_interval=2,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
# users see only their own jobs, usage and accounts; root (the hub's one watch) sees everything
PrivateData=jobs,usage,accounts
SlurmctldTimeout=30
SlurmdTimeout=60
# jobs' scratch (carme.scratch of carme.example.yaml): the prolog makes it on every node when the job
# is allocated, before its batch script; the epilog removes it whenever the job ends
Prolog=$STATE/etc/carme-prolog
Epilog=$STATE/etc/carme-epilog
PrologFlags=Alloc
# more than twice carme.scratch.beeond_timeout: a failing BeeOND start is stopped too
PrologEpilogTimeout=900
EOF
    local i
    for i in "${!NODES[@]}"; do
        echo "NodeName=${NODES[$i]} NodeHostname=$host NodeAddr=127.0.0.1 Port=${NODE_PORTS[$i]} CPUs=$CPUS_PER_NODE RealMemory=$MEM_PER_NODE_MB TmpDisk=${NODE_TMP_MB[$i]} Gres=$(node_gres "$i") State=UNKNOWN" >>"$STATE/etc/slurm.conf.new"
    done
    local nodelist
    nodelist=$(IFS=,; echo "${NODES[*]}")
    cat >>"$STATE/etc/slurm.conf.new" <<EOF
PartitionName=interactive Nodes=$nodelist Default=YES MaxTime=08:00:00 DefaultTime=01:00:00 MaxNodes=1 State=UP
PartitionName=batch Nodes=$nodelist MaxTime=7-00:00:00 DefaultTime=04:00:00 State=UP
EOF
    : >"$STATE/etc/gres.conf.new"
    local n spec first
    for n in "${!NODES[@]}"; do
        first=0
        for spec in ${NODE_GPUS[$n]}; do
            echo "NodeName=${NODES[$n]} Name=gpu Type=${spec%%:*} File=$STATE/dev/${NODES[$n]}/nvidia[$first-$((first + ${spec##*:} - 1))]" >>"$STATE/etc/gres.conf.new"
            first=$((first + ${spec##*:}))
        done
    done
    local f
    for f in slurm.conf gres.conf; do
        cmp -s "$STATE/etc/$f.new" "$STATE/etc/$f" || CONFIG_CHANGED=1
        mv "$STATE/etc/$f.new" "$STATE/etc/$f"
        if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then
            mv "/etc/slurm/$f" "/etc/slurm/$f.before-carme"
            log "kept the previous /etc/slurm/$f as $f.before-carme"
        fi
        ln -sfn "$STATE/etc/$f" "/etc/slurm/$f"
    done
}

# pid_alive PIDFILE NAME: the file names a live process that is NAME. A machine restored from a
# snapshot keeps the state dir's pid files, and their pids may belong to other processes by now.
pid_alive() {
    local pid
    [ -f "$1" ] && pid=$(cat "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

mariadb_sql() { mariadb --socket="$STATE/mariadb/run/mysqld.sock" -u root -e "$1"; }

start_mariadb() {
    local dir="$STATE/mariadb" i
    mkdir -p "$dir/data" "$dir/run"
    chown -R mysql:mysql "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$dir/data" --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 \
            || { cat "$dir/install.log" >&2; die "mariadb-install-db failed"; }
        log "MariaDB data directory made in $dir/data"
    fi
    if ! pid_alive "$dir/run/mysqld.pid" mariadbd; then
        runuser -u mysql -- /usr/sbin/mariadbd --datadir="$dir/data" --socket="$dir/run/mysqld.sock" \
            --pid-file="$dir/run/mysqld.pid" --bind-address=127.0.0.1 --port=$MARIADB_PORT --skip-name-resolve \
            --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 >>"$dir/mariadbd.log" 2>&1 &
        for ((i = 0; i < 60; i++)); do
            mariadb_sql "SELECT 1" >/dev/null 2>&1 && break
            sleep 0.5
        done
        mariadb_sql "SELECT 1" >/dev/null 2>&1 || { tail -n 20 "$dir/mariadbd.log" >&2; die "MariaDB did not start"; }
        log "MariaDB started on 127.0.0.1:$MARIADB_PORT"
    fi
}

write_slurmdbd_config() {
    # the database password lives in a root-only file and in slurmdbd.conf (mode 0600, as slurmdbd requires)
    local secret="$STATE/secrets/slurmdbd-db-password" password
    mkdir -p "$STATE/secrets" && chmod 0700 "$STATE/secrets"
    [ -s "$secret" ] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$secret")
    password=$(cat "$secret")
    mariadb_sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
                 ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
                 GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    (
        umask 077
        cat >"$STATE/etc/slurmdbd.conf.new" <<EOF
# Written by dev/cluster.sh: the Carme development cluster's accounting. Do not edit; edit the script.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
EOF
    )
    mv "$STATE/etc/slurmdbd.conf.new" "$STATE/etc/slurmdbd.conf"
    ln -sfn "$STATE/etc/slurmdbd.conf" /etc/slurm/slurmdbd.conf
}

start_slurmdbd() {
    local i
    if ! pid_alive "$STATE/run/slurmdbd.pid" slurmdbd; then
        /usr/sbin/slurmdbd
        log "slurmdbd started"
    fi
    for ((i = 0; i < 60; i++)); do
        sacctmgr -n list cluster >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -n 20 "$STATE/log/slurmdbd.log" >&2
    die "slurmdbd does not answer"
}

make_associations() {
    # idempotent: only what is missing is added
    local entry name users=(root)
    sacctmgr -n -P list cluster format=cluster | grep -qx carme-dev || sacctmgr -i add cluster carme-dev >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
        || sacctmgr -i add account "$ACCOUNT" cluster=carme-dev description="Carme development" organization=carme >/dev/null
    for entry in "${TEST_USERS[@]}"; do
        read -r name _ <<<"$entry"
        users+=("$name")
    done
    local i missing=() have
    for ((i = 1; i <= LOAD_USERS; i++)); do users+=("$(printf 'load%02d' "$i")"); done
    have=$(sacctmgr -n -P list assoc account="$ACCOUNT" format=user)
    for name in "${users[@]}"; do
        grep -qx "$name" <<<"$have" || missing+=("$name")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sacctmgr -i add user "$(IFS=,; echo "${missing[*]}")" account="$ACCOUNT" cluster=carme-dev >/dev/null
    fi
    log "accounting: cluster carme-dev, account $ACCOUNT, associations for ${TEST_USERS[*]%% *} root and load01..load$(printf '%02d' "$LOAD_USERS")"
}

# the node scripts of jobs' scratch, from the demo's settings (the tests use the same paths); the dirs
# stand for the nodes' SSDs; /scratch exists for the STAND-IN apptainer (it binds onto the host's root)
write_scratch_scripts() {
    [ -x "$CARME" ] || die "$CARME is missing: run make install first (the prolog is rendered by it)"
    "$CARME" scratch-scripts --settings "$HERE/../carme.example.yaml" --out "$STATE/etc" >/dev/null \
        || die "carme scratch-scripts failed"
    mkdir -p /scratch "$STATE/ssd" && chmod 0755 /scratch
    log "scratch prolog/epilog written to $STATE/etc (carme.scratch of carme.example.yaml)"
}

start_munge() {
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    if ! pid_alive /run/munge/munged.pid munged; then
        runuser -u munge -- /usr/sbin/munged --force
        log "munged started"
    fi
    munge -n | unmunge >/dev/null || die "munge does not work"
}

start_slurm() {
    if ! pid_alive "$STATE/run/slurmctld.pid" slurmctld; then
        /usr/sbin/slurmctld -i
        log "slurmctld started"
    fi
    local node
    for node in "${NODES[@]}"; do
        if ! pid_alive "$STATE/run/slurmd-$node.pid" slurmd; then
            /usr/sbin/slurmd -N "$node"
            log "slurmd $node started"
        fi
    done
}

wait_idle() {
    local i state
    for ((i = 0; i < 60; i++)); do
        state=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u || true)
        if [ -n "$state" ] && ! grep -qvE ' (idle|mix|alloc)$' <<<"$state"; then
            log "nodes ready: $(tr '\n' ' ' <<<"$state")"
            return 0
        fi
        # nodes left DOWN by an earlier unclean stop come back with ReturnToService=2; nudge them
        if grep -qE ' (down|drain|drng)\*?$' <<<"$state"; then
            scontrol update NodeName="$(IFS=,; echo "${NODES[*]}")" State=RESUME >/dev/null 2>&1 || true
        fi
        sleep 1
    done
    sinfo -N >&2 || true
    tail -n 20 "$STATE/log/slurmctld.log" >&2 || true
    die "nodes did not become idle within 60 s"
}

check_gpus() {
    local out
    out=$(srun -Q -p interactive --gres=gpu:2 -t 1 bash -c 'echo "$CUDA_VISIBLE_DEVICES"' 2>&1) || die "test job failed: $out"
    [[ "$out" =~ ^[0-9]+,[0-9]+$ ]] || die "a --gres=gpu:2 job saw CUDA_VISIBLE_DEVICES='$out'"
    log "a --gres=gpu:2 job sees CUDA_VISIBLE_DEVICES=$out"
    out=$(srun -Q -p interactive --gres=gpu:1g.10gb:1 -t 1 bash -c 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"' 2>&1) \
        || die "a test job on a 1g.10gb slice failed: $out"
    [[ "$out" =~ ^carme-n2\ [2-5]$ ]] || die "a --gres=gpu:1g.10gb:1 job saw node and CUDA_VISIBLE_DEVICES '$out'"
    log "a --gres=gpu:1g.10gb:1 job runs on $out (a slice's device index)"
}

stop_slurm() {
    local node i
    for node in "${NODES[@]}"; do
        pid_alive "$STATE/run/slurmd-$node.pid" slurmd && kill "$(cat "$STATE/run/slurmd-$node.pid")" || true
    done
    pid_alive "$STATE/run/slurmctld.pid" slurmctld && kill "$(cat "$STATE/run/slurmctld.pid")" || true
    for ((i = 0; i < 40; i++)); do
        pid_alive "$STATE/run/slurmctld.pid" slurmctld || pid_alive "$STATE/run/slurmd-${NODES[0]}.pid" slurmd \
            || pid_alive "$STATE/run/slurmd-${NODES[1]}.pid" slurmd || break
        sleep 0.25
    done
}

stop_all() {
    stop_slurm
    pid_alive "$STATE/run/slurmdbd.pid" slurmdbd && kill "$(cat "$STATE/run/slurmdbd.pid")" || true
    pid_alive "$STATE/mariadb/run/mysqld.pid" mariadbd && kill "$(cat "$STATE/mariadb/run/mysqld.pid")" || true
    sleep 1
    log "slurm daemons, slurmdbd and MariaDB stopped"
}

case "${1:-up}" in
up)
    install_packages
    make_users
    make_fake_gpus
    write_config
    write_scratch_scripts
    start_munge
    start_mariadb
    write_slurmdbd_config
    start_slurmdbd
    make_associations
    if [ "${CONFIG_CHANGED:-0}" = 1 ] && pid_alive "$STATE/run/slurmctld.pid" slurmctld; then
        # nodes' gres and the accounting TRES change only with a restart of slurmctld and the slurmds
        stop_slurm
        log "the configuration changed: slurmctld and the slurmds restart"
    fi
    start_slurm
    wait_idle
    check_gpus
    ;;
down) stop_all ;;
status)
    sinfo
    squeue
    ;;
*) die "usage: $0 up|down|status" ;;
esac
