#!/usr/bin/env bash
# Runs a real single-node Apache Kafka (KRaft, broker+controller) on loopback for development,
# tests and CI. The jars come from Maven Central through scripts/kafka/pom.xml.
#
#   scripts/kafka.sh up|down|status|restart|fetch
#
# Environment: KAFKA_VERSION (3.9.1), KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093),
# KAFKA_HEAP (-Xmx512m -Xms256m), SUPTECH_STATE (.state under the repo).
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

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) down; up ;;
  fetch) fetch ;;
  wipe) down; rm -rf "$dir" ;;
  *) echo "usage: $0 up|down|status|restart|fetch|wipe" >&2; exit 2 ;;
esac
