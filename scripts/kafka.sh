#!/usr/bin/env bash
# Runs a real single-node Apache Kafka (KRaft, broker+controller) on loopback for development,
# tests and CI. The jars come from Maven Central through scripts/kafka/pom.xml.
#
#   scripts/kafka.sh up|down|status|restart|fetch|wipe
#   scripts/kafka.sh up-secure|down-secure|wipe-secure
#   scripts/kafka.sh up-cluster|down-cluster|wipe-cluster|stop-node N|start-node N
#
# Environment: KAFKA_VERSION (3.9.1), KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093),
# KAFKA_HEAP (-Xmx512m -Xms256m), SUPTECH_STATE (.state under the repo).
#
# up-secure: one broker whose only client listener is SASL_SSL (TLS with a CA made here by
# openssl, SCRAM-SHA-512 users made at format time) and StandardAuthorizer on. Users: admin
# (the broker itself, super user), suptech (super user, for tests and set-up), detector and
# other (no rights until an ACL gives some). Prints SUPTECH_KAFKA_* lines for a client.
# Environment: KAFKA_SECURE_PORT (19192), KAFKA_SECURE_CONTROLLER_PORT (19193),
# KAFKA_SECURE_HEAP (-Xmx384m -Xms128m).
#
# up-cluster: three KRaft brokers (each also a controller) on loopback, PLAINTEXT, default
# replication 3 and min.insync.replicas 2. Environment: KAFKA_CLUSTER_PORT (19291: brokers
# on 19291-19293, controllers on 19391-19393), KAFKA_CLUSTER_HEAP (-Xmx320m -Xms128m).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
version=${KAFKA_VERSION:-3.9.1}
port=${KAFKA_PORT:-19092}
ctrl_port=${KAFKA_CONTROLLER_PORT:-19093}
state=${SUPTECH_STATE:-$repo/.state}
libs=$state/kafka-libs-$version
dir=$state/kafka-$port
props=$dir/server.properties
pidfile=$dir/kafka.pid
log=$dir/kafka.out

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
  command -v java >/dev/null || { echo "kafka.sh: java not found (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
  echo "kafka.sh: fetching Apache Kafka $version from Maven Central" >&2
  rm -rf "$libs"
  mvn -B -q -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" -Dkafka.version="$version"
  touch "$libs/.complete"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

answers() {
  # A TCP connect is not enough (the socket opens before the broker is ready): ask for metadata.
  python3 - "$port" <<'PY' 2>/dev/null
import sys
from kafka import KafkaAdminClient
a = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}", request_timeout_ms=3000)
a.describe_cluster()
a.close()
PY
}

write_props() {
  mkdir -p "$dir/data"
  cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=2
message.max.bytes=8388608
PROPS
}

up() {
  fetch
  if running; then
    echo "kafka.sh: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    return 0
  fi
  write_props
  local cp="$libs/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null)
    java -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$props" --ignore-formatted >/dev/null 2>&1
  fi
  # setsid: the broker outlives the shell that started it, and `down` stops it by pid.
  KAFKA_HEAP_OPTS= setsid nohup java ${KAFKA_HEAP:--Xmx512m -Xms256m} -XX:+UseG1GC \
    -Dlog4j.configuration="file:$here/kafka/log4j.properties" -Dkafka.logs.dir="$dir" \
    -cp "$cp" kafka.Kafka "$props" >"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if answers; then
      echo "kafka.sh: Kafka $version up on 127.0.0.1:$port (pid $(cat "$pidfile"))"
      return 0
    fi
    running || { echo "kafka.sh: broker exited; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.5
  done
  echo "kafka.sh: broker did not answer within 60 s; see $log" >&2
  exit 1
}

down() {
  if ! running; then echo "kafka.sh: not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "kafka.sh: stopped"; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka.sh: killed after 30 s"
}

status() {
  if running && answers; then echo "kafka.sh: up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "kafka.sh: down"; return 3; fi
}

# --- shared by the secure broker and the cluster ----------------------------------------------

node_running() { # <pidfile>
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_node() { # <dir> <heap>: format the log dir once (extra format args in $format_args), start
  local ndir=$1 heap=$2 cp="$libs/*"
  if [ ! -f "$ndir/data/meta.properties" ]; then
    # shellcheck disable=SC2086
    java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$ndir/server.properties" \
      --ignore-formatted ${format_args[@]+"${format_args[@]}"} >"$ndir/format.out" 2>&1 \
      || { echo "kafka.sh: format failed:" >&2; cat "$ndir/format.out" >&2; exit 1; }
  fi
  # shellcheck disable=SC2086
  KAFKA_HEAP_OPTS= setsid nohup java $heap -XX:+UseG1GC \
    -Dlog4j.configuration="file:$here/kafka/log4j.properties" -Dkafka.logs.dir="$ndir" \
    -cp "$cp" kafka.Kafka "$ndir/server.properties" >"$ndir/kafka.out" 2>&1 < /dev/null &
  echo $! > "$ndir/kafka.pid"
}

stop_node() { # <dir>
  local pidf=$1/kafka.pid pid
  node_running "$pidf" || { rm -f "$pidf"; return 0; }
  pid=$(cat "$pidf")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

kill_node() { # <dir>: for wipe, where nothing is kept (a broker that lost its quorum can take
  # 30 s to give up a controlled shutdown)
  local pidf=$1/kafka.pid
  if node_running "$pidf"; then
    kill -KILL "$(cat "$pidf")" 2>/dev/null || true
    for _ in $(seq 1 20); do node_running "$pidf" || break; sleep 0.25; done
  fi
  rm -f "$pidf"
}

wait_answers() { # <bootstrap> <min brokers> <pidfile...>: metadata from a client, not a TCP connect
  local bootstrap=$1 brokers=$2; shift 2
  for _ in $(seq 1 180); do
    if python3 - "$bootstrap" "$brokers" <<'PY' 2>/dev/null
import json, os, sys
from kafka import KafkaAdminClient
extra = json.loads(os.environ.get("KAFKA_SH_CLIENT", "{}"))
a = KafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=3000, **extra)
n = len(a.describe_cluster()["brokers"])
a.close()
sys.exit(0 if n >= int(sys.argv[2]) else 1)
PY
    then return 0; fi
    for pidf in "$@"; do
      node_running "$pidf" || {
        echo "kafka.sh: broker exited; last lines of $(dirname "$pidf")/kafka.out:" >&2
        tail -20 "$(dirname "$pidf")/kafka.out" >&2; exit 1; }
    done
    sleep 0.5
  done
  echo "kafka.sh: $bootstrap did not answer within 90 s" >&2
  exit 1
}

new_cluster_id() {
  java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null
}

# --- TLS + SASL/SCRAM broker ----------------------------------------------------------------

sport=${KAFKA_SECURE_PORT:-19192}
sctrl=${KAFKA_SECURE_CONTROLLER_PORT:-19193}
sdir=$state/kafka-secure-$sport
pki=$sdir/pki
secure_users=(admin suptech detector other)

make_pki() {
  # A CA and a broker certificate for 127.0.0.1/localhost, made once per state directory.
  [ -f "$pki/broker-keystore.pem" ] && return 0
  command -v openssl >/dev/null || { echo "kafka.sh: openssl not found" >&2; exit 1; }
  mkdir -p "$pki" && chmod 700 "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=suptech test Kafka CA" \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$pki/broker.key" -out "$pki/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
    > "$pki/broker.ext"
  openssl x509 -req -in "$pki/broker.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/broker.ext" -out "$pki/broker.pem" 2>/dev/null
  # A PEM keystore (PKCS#8 key, then the certificate), as the Helm chart builds it from a
  # kubernetes.io/tls Secret.
  cat "$pki/broker.key" "$pki/broker.pem" > "$pki/broker-keystore.pem"
  for u in "${secure_users[@]}"; do
    (umask 077; openssl rand -hex 24 > "$pki/$u.password")
  done
}

write_secure_props() {
  mkdir -p "$sdir/data"
  local admin_pass
  admin_pass=$(cat "$pki/admin.password")
  cat > "$sdir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$sctrl
listeners=SASL_SSL://127.0.0.1:$sport,CONTROLLER://127.0.0.1:$sctrl
advertised.listeners=SASL_SSL://127.0.0.1:$sport
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pass";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pass";
ssl.keystore.type=PEM
ssl.keystore.location=$pki/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/ca.pem
# The controller listener takes only certificates of the CA; its principal is the CN (localhost).
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]*).*\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:suptech;User:localhost
allow.everyone.if.no.acl.found=false
log.dirs=$sdir/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
message.max.bytes=8388608
PROPS
}

secure_env() {
  echo "KAFKA_ADDR=127.0.0.1:$sport"
  echo "SUPTECH_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
  echo "SUPTECH_KAFKA_SSL_CAFILE=$pki/ca.pem"
  echo "SUPTECH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
  echo "SUPTECH_KAFKA_SASL_USERNAME=suptech"
  echo "SUPTECH_KAFKA_SASL_PASSWORD_FILE=$pki/suptech.password"
  echo "# other users' password files: $pki/{detector,other}.password"
}

secure_client_json() {
  python3 - "$pki" <<'PY'
import json, sys
pki = sys.argv[1]
print(json.dumps({"security_protocol": "SASL_SSL", "ssl_cafile": f"{pki}/ca.pem",
                  "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "suptech",
                  "sasl_plain_password": open(f"{pki}/suptech.password").read().strip()}))
PY
}

up_secure() {
  fetch
  local cp="$libs/*"
  if node_running "$sdir/kafka.pid"; then
    echo "kafka.sh: secure Kafka already running on 127.0.0.1:$sport (pid $(cat "$sdir/kafka.pid"))" >&2
    secure_env
    return 0
  fi
  make_pki
  write_secure_props
  format_args=()
  for u in "${secure_users[@]}"; do
    format_args+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(cat "$pki/$u.password")]")
    format_args+=(--add-scram "SCRAM-SHA-256=[name=$u,password=$(cat "$pki/$u.password")]")
  done
  cluster_id=$(new_cluster_id)
  start_node "$sdir" "${KAFKA_SECURE_HEAP:--Xmx384m -Xms128m}"
  KAFKA_SH_CLIENT=$(secure_client_json) wait_answers "127.0.0.1:$sport" 1 "$sdir/kafka.pid"
  echo "kafka.sh: secure Kafka $version up on 127.0.0.1:$sport (SASL_SSL, SCRAM-SHA-512; pid $(cat "$sdir/kafka.pid"))" >&2
  secure_env
}

# --- three-broker KRaft cluster -----------------------------------------------------------------

cport=${KAFKA_CLUSTER_PORT:-19291}
cdir=$state/kafka-cluster-$cport

node_dir() { echo "$cdir/node-$1"; }

write_cluster_props() { # <node id 1..3>
  local n=$1 ndir voters
  ndir=$(node_dir "$n")
  voters="1@127.0.0.1:$((cport + 100)),2@127.0.0.1:$((cport + 101)),3@127.0.0.1:$((cport + 102))"
  mkdir -p "$ndir/data"
  cat > "$ndir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((cport + n - 1)),CONTROLLER://127.0.0.1:$((cport + 99 + n))
advertised.listeners=PLAINTEXT://127.0.0.1:$((cport + n - 1))
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$ndir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
message.max.bytes=8388608
PROPS
}

cluster_bootstrap() {
  echo "127.0.0.1:$cport,127.0.0.1:$((cport + 1)),127.0.0.1:$((cport + 2))"
}

up_cluster() {
  fetch
  format_args=()
  if [ -f "$cdir/cluster.id" ]; then cluster_id=$(cat "$cdir/cluster.id"); else
    mkdir -p "$cdir"; cluster_id=$(new_cluster_id); echo "$cluster_id" > "$cdir/cluster.id"; fi
  local pids=()
  for n in 1 2 3; do
    local ndir; ndir=$(node_dir "$n")
    if ! node_running "$ndir/kafka.pid"; then
      write_cluster_props "$n"
      start_node "$ndir" "${KAFKA_CLUSTER_HEAP:--Xmx320m -Xms128m}"
    fi
    pids+=("$ndir/kafka.pid")
  done
  wait_answers "$(cluster_bootstrap)" 3 "${pids[@]}"
  echo "kafka.sh: three-broker Kafka $version up (replication 3, min ISR 2)" >&2
  echo "KAFKA_ADDR=$(cluster_bootstrap)"
}

down_cluster() {
  for n in 1 2 3; do stop_node "$(node_dir "$n")"; done
  echo "kafka.sh: cluster stopped" >&2
}

node_arg() {
  case "${1:-}" in 1|2|3) ;; *) echo "usage: $0 stop-node|start-node 1|2|3" >&2; exit 2 ;; esac
}

case "${1:-}" in
  up-secure) up_secure; exit 0 ;;
  down-secure) stop_node "$sdir"; echo "kafka.sh: secure Kafka stopped" >&2; exit 0 ;;
  wipe-secure) kill_node "$sdir"; rm -rf "$sdir"; exit 0 ;;
  up-cluster) up_cluster; exit 0 ;;
  down-cluster) down_cluster; exit 0 ;;
  wipe-cluster) for n in 1 2 3; do kill_node "$(node_dir "$n")"; done; rm -rf "$cdir"; exit 0 ;;
  # For failure drills: stop or restart one broker of the three (by node id).
  stop-node) node_arg "${2:-}"; stop_node "$(node_dir "$2")"; exit 0 ;;
  start-node)
    node_arg "${2:-}"; fetch; format_args=(); cluster_id=$(cat "$cdir/cluster.id")
    start_node "$(node_dir "$2")" "${KAFKA_CLUSTER_HEAP:--Xmx320m -Xms128m}"
    wait_answers "$(cluster_bootstrap)" 3 "$(node_dir "$2")/kafka.pid"; exit 0 ;;
esac

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) down; up ;;
  fetch) fetch ;;
  wipe) down; rm -rf "$dir" ;;
  *) echo "usage: $0 up|down|status|restart|fetch|wipe|up-secure|down-secure|wipe-secure|up-cluster|down-cluster|wipe-cluster|stop-node N|start-node N" >&2; exit 2 ;;
esac
