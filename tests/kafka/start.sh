#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts a single-node KRaft Apache Kafka broker (combined broker+controller)
# on free loopback ports for the integration tests, and waits until it answers
# metadata requests.
#
# Usage: start.sh [--again] OUTDIR
#
# Writes into OUTDIR: classpath.txt (from Maven, reused while pom.xml is
# unchanged), server.properties, data/ (removed by stop.sh), broker.pid,
# broker.log (kept by stop.sh; the previous run's becomes broker.log.prev),
# and bootstrap (host:port, also printed on stdout). Exits non-zero with the
# tail of broker.log if the broker is not up within LD_TEST_BROKER_TIMEOUT
# seconds (default 90).
#
# --again starts the broker of OUTDIR once more after `stop.sh --kill
# OUTDIR` crashed it: same server.properties (ports, node and cluster id),
# same data/, no formatting, broker.log appended to. Clients keep the
# address they had. For tests of a broker restart (0007).
#
# When LD_TEST_BOOTSTRAP is set, an external broker is in use: nothing is
# started, the address is only checked and written to OUTDIR/bootstrap.
set -euo pipefail

again=0
if [ "${1:-}" = "--again" ]; then
    again=1
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 [--again] OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
deadline_s=${LD_TEST_BROKER_TIMEOUT:-90}
# A broker leaked by an interrupted ctest run stops by itself after this long.
max_life_s=${LD_TEST_BROKER_MAX_LIFETIME:-7200}
log=$outdir/broker.log
t0=$(date +%s%N)

say() { echo "start.sh: $*" >&2; }
elapsed() { echo "$(( ($(date +%s%N) - t0) / 1000000 ))ms"; }

# True when ADDR answers a metadata request listing a broker at ADDR itself,
# i.e. the broker has registered with the controller and serves clients.
metadata_ok() {
    local addr=$1 out
    # kcat waits its whole -m timeout on a closed port; a refused connect
    # answers at once, so probe the port first.
    (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null || return 1
    out=$(kcat -L -b "$addr" -m 3 2>/dev/null) || return 1
    grep -q " at $addr" <<<"$out"
}

wait_metadata() {
    local addr=$1 pid=${2:-} end=$(( $(date +%s) + deadline_s ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        if metadata_ok "$addr"; then
            return 0
        fi
        # Paces the probes while the broker is still coming up.
        sleep 0.2
    done
    return 1
}

write_bootstrap() {
    echo "$1" >"$outdir/bootstrap.tmp"
    mv "$outdir/bootstrap.tmp" "$outdir/bootstrap"
    echo "$1"
}

command -v kcat >/dev/null || { say "kcat not found (Debian package kcat)"; exit 1; }

if [ -n "${LD_TEST_BOOTSTRAP:-}" ]; then
    if [ "$again" -eq 1 ]; then
        say "--again: LD_TEST_BOOTSTRAP=$LD_TEST_BOOTSTRAP is an external" \
            "broker, not ours to restart"
        exit 2
    fi
    say "LD_TEST_BOOTSTRAP=$LD_TEST_BOOTSTRAP set: using that broker"
    first=${LD_TEST_BOOTSTRAP%%,*}
    if ! wait_metadata "$first"; then
        say "external broker $first did not answer metadata in ${deadline_s}s"
        exit 1
    fi
    write_bootstrap "$LD_TEST_BOOTSTRAP"
    exit 0
fi

command -v java >/dev/null || { say "java not found (Java 17+ needed)"; exit 1; }
command -v mvn >/dev/null || { say "mvn not found (Debian package maven)"; exit 1; }
command -v python3 >/dev/null || { say "python3 not found"; exit 1; }

if [ "$again" -eq 1 ]; then
    # A crashed broker's pid file may remain; a live broker must not.
    if [ -s "$outdir/broker.pid" ] && kill -0 "$(cat "$outdir/broker.pid")" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$(cat "$outdir/broker.pid")/cmdline" 2>/dev/null |
            grep -qF "$outdir/server.properties"; then
        say "--again: the broker of $outdir is still running (stop.sh --kill first)"
        exit 1
    fi
    if [ ! -s "$outdir/server.properties" ] || [ ! -d "$outdir/data/logs" ]; then
        say "--again: no server.properties and data/ in $outdir to start on" \
            "(start.sh OUTDIR first)"
        exit 1
    fi
else
    # A broker left from an interrupted run would hold the data dir.
    if [ -f "$outdir/broker.pid" ]; then
        say "stopping a broker left from an earlier run"
        "$here/stop.sh" "$outdir" >&2 || true
    fi
    rm -f "$outdir/bootstrap"
fi

# ---- Classpath: Maven resolves it once; later runs reuse the file. --------
cp_file=$outdir/classpath.txt
cp_ok() {
    [ -s "$cp_file" ] && [ "$cp_file" -nt "$here/pom.xml" ] || return 1
    local jar
    IFS=: read -r -a jars <"$cp_file"
    for jar in "${jars[@]}"; do [ -f "$jar" ] || return 1; done
}
if ! cp_ok; then
    say "resolving the broker classpath with Maven (first run downloads ~60 MB)"
    # Full plugin coordinates: no plugin-prefix metadata lookup, so a warm
    # ~/.m2 works offline; fall back to online when something is missing.
    goal=org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath
    mvn_args=(-B -q -f "$here/pom.xml" "-Dld.outdir=$outdir/mvn"
              "-Dmdep.outputFile=$cp_file.tmp" "$goal")
    if ! mvn -o "${mvn_args[@]}" >"$outdir/mvn.log" 2>&1; then
        if ! mvn "${mvn_args[@]}" >>"$outdir/mvn.log" 2>&1; then
            say "Maven failed; $outdir/mvn.log:"
            tail -n 40 "$outdir/mvn.log" >&2
            exit 1
        fi
    fi
    mv "$cp_file.tmp" "$cp_file"
    rm -rf "$outdir/mvn"
    say "classpath ready after $(elapsed)"
fi
classpath=$(cat "$cp_file")

if [ "$again" -eq 0 ]; then
    [ -f "$log" ] && mv "$log" "$log.prev"
    : >"$log"
    : >"$outdir/broker.out"
fi

jvm_opts=(
    -Xms128m -Xmx512m
    # Two cores: one GC thread pool that does not compete with the tests.
    -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$here/log4j2.xml"
    "-Dld.broker.log=$log"
    "-Dkafka.logs.dir=$outdir"
)

# Starts the broker on $props in its own session; sets pid. setsid: the
# broker must not hold ctest's output pipe or die with the fixture's process
# group. The inner shell records its own pid, which timeout then inherits by
# exec, so broker.pid names the session leader whose process group stop.sh
# signals.
launch() {
    rm -f "$outdir/broker.pid"
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$outdir/broker.pid" \
        timeout -k 30 "$max_life_s" \
        java "${jvm_opts[@]}" -cp "$classpath" kafka.Kafka "$props" \
        </dev/null >>"$outdir/broker.out" 2>&1 &
    # Wait for the pid file the inner shell writes first thing.
    for _ in $(seq 50); do [ -s "$outdir/broker.pid" ] && break; sleep 0.1; done
    pid=$(cat "$outdir/broker.pid")
}

# True when the broker logged a bind failure after byte $1 of its log.
bind_failed() {
    tail -c "+$(($1 + 1))" "$log" | grep -q 'Address already in use' ||
        grep -q 'Address already in use' "$outdir/broker.out"
}

log_bytes() { stat -c %s "$log"; }

# Launches the broker and waits until it answers at $1; exits 0 then
# ("broker up$2 at ..."). Otherwise returns wait_metadata's code, with
# $from the broker log's size before the launch (for bind_failed).
launch_and_wait() {
    from=$(log_bytes)
    launch
    local rc=0
    wait_metadata "$1" "$pid" || rc=$?
    if [ "$rc" -eq 0 ]; then
        write_bootstrap "$1"
        say "broker up$2 at $1 after $(elapsed) (pid $pid, log $log)"
        exit 0
    fi
    return "$rc"
}

fail() {
    if [ "${rc:-1}" -eq 2 ]; then
        say "broker exited before answering metadata"
    else
        say "broker did not answer metadata at $addr within ${deadline_s}s"
    fi
    say "---- tail of $log ----"
    tail -n 60 "$log" >&2
    if [ -s "$outdir/broker.out" ]; then
        say "---- tail of $outdir/broker.out ----"
        tail -n 20 "$outdir/broker.out" >&2
    fi
    "$here/stop.sh" "$outdir" >&2 || true
    exit 1
}

if [ "$again" -eq 1 ]; then
    props=$outdir/server.properties
    addr=$(sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$props")
    echo "start.sh: --again: starting on the data in $outdir/data" >>"$log"
    # The address must not change, so a port still taken is waited out
    # rather than replaced (while the broker was down, an outgoing
    # connection may have been given it as its local port).
    for attempt in 1 2 3 4 5; do
        : >"$outdir/broker.out"
        rc=0
        launch_and_wait "$addr" " again" || rc=$?
        if [ "$rc" -eq 2 ] && bind_failed "$from"; then
            say "a port of $addr is still taken (attempt $attempt); retrying"
            sleep 2
            continue
        fi
        break
    done
    fail
fi

free_ports() {
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Kafka's cluster id: 16 random bytes, URL-safe base64 without padding. Not
# one that starts with '-': StorageTool's parser takes that for an option
# ("argument --cluster-id/-t: expected one argument"), one start in 64
# (Kafka's own Uuid.randomUuid() skips those for the same reason).
cluster_id=-
while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
done

# The ports are free when picked but could be taken before the broker binds
# them; a bind failure retries with new ones.
for attempt in 1 2 3; do
    read -r bport cport <<<"$(free_ports)"
    addr=127.0.0.1:$bport
    data=$outdir/data
    rm -rf "$data"
    mkdir -p "$data"
    props=$outdir/server.properties
    cat >"$props" <<EOF
# Generated by tests/kafka/start.sh: single-node KRaft test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$addr
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data/logs

# One node: every internal topic has one replica.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true

# Time retention is checked every second, not every 5 minutes: a test can
# await one check (a record stamped long ago is deleted) to show that its
# own records survive one (0014-new-user).
log.retention.check.interval.ms=1000

# Small: tests write little, the machine has two cores.
log.segment.bytes=1048576
offsets.topic.segment.bytes=1048576
transaction.state.log.segment.bytes=1048576
log.cleaner.dedupe.buffer.size=8388608
log.cleaner.threads=1
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
EOF

    echo "start.sh: formatting $data (cluster id $cluster_id)" >>"$log"
    if ! java "${jvm_opts[@]}" -cp "$classpath" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$props" >>"$log" 2>&1; then
        say "formatting the storage failed; $log:"
        tail -n 40 "$log" >&2
        exit 1
    fi

    rc=0
    launch_and_wait "$addr" "" || rc=$?
    if [ "$rc" -eq 2 ] && bind_failed "$from"; then
        say "port taken before the broker bound it (attempt $attempt); retrying"
        rm -f "$outdir/broker.pid"
        continue
    fi
    break
done

fail
