#!/usr/bin/env bash
# One Apache Kafka node in KRaft combined mode (broker and controller), for the
# tests: used by scripts/services.sh (the single broker on 127.0.0.1:9092) and
# by the tests that start a 3-broker cluster (internal/kafkacluster).
#
#   node.sh fetch                  fetch the broker's jars once (Maven Central)
#   node.sh start DIR ID PORT CONTROLLER_PORT VOTERS REPLICAS CLUSTER_ID [ADVERTISED_PORT]
#                                  format DIR once, start the node, print its PID;
#                                  clients are told to connect to ADVERTISED_PORT
#                                  (default PORT), where a test may run a proxy
#   node.sh wait DIR [SECONDS]     wait until the node started last in DIR serves
#   node.sh cluster-id             print a new cluster ID
#   node.sh version                print the pinned Kafka version
#
# DIR keeps the node's configuration, log directory (data/), server.log and pid.
# A node started again in the same DIR keeps its data, as a restarted broker does.
# OUTBOX_KAFKA_LIBS overrides where the jars live (default .cache/kafka/libs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libs=${OUTBOX_KAFKA_LIBS:-$root/.cache/kafka/libs}

die() { echo "kafka: $*" >&2; exit 1; }

version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml"; }

fetch() {
	local v; v=$(version)
	[ -f "$libs/kafka_2.13-$v.jar" ] && return 0
	command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven) to fetch the Kafka jars"
	command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
	echo "kafka: fetching Apache Kafka $v jars from Maven Central into $libs (once)" >&2
	rm -rf "$libs.tmp"
	if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs.tmp" >&2; then
		rm -rf "$libs.tmp"
		die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
	fi
	rm -rf "$libs"
	mv "$libs.tmp" "$libs"
}

jvm=(java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
	-Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*")

start() {
	[ $# -eq 7 ] || [ $# -eq 8 ] || die "usage: node.sh start DIR ID PORT CONTROLLER_PORT VOTERS REPLICAS CLUSTER_ID [ADVERTISED_PORT]"
	local dir=$1 id=$2 port=$3 cport=$4 voters=$5 replicas=$6 cluster=$7 aport=${8:-$3}
	fetch
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local isr=$((replicas > 1 ? 2 : 1))
	cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$aport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$replicas
min.insync.replicas=$isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
EOF
	if [ ! -f "$dir/data/meta.properties" ]; then
		"${jvm[@]}" -Dkafka.logs.dir="$dir" kafka.tools.StorageTool format \
			-t "$cluster" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
			die "formatting $dir failed: $(tail -n 3 "$dir/format.log")"
	fi
	[ -f "$dir/server.log" ] && mv "$dir/server.log" "$dir/server.log.1"
	# setsid: the node outlives the shell (and the test) that started it.
	setsid "${jvm[@]}" -Dkafka.logs.dir="$dir" kafka.Kafka "$dir/server.properties" \
		</dev/null >"$dir/stdout.log" 2>&1 &
	echo $! >"$dir/pid"
	echo $!
}

# A random Kafka UUID: 16 bytes in URL-safe base64, not starting with '-'.
cluster_id() {
	local id=-
	while [ "${id:0:1}" = - ]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); done
	echo "$id"
}

wait_ready() {
	local dir=$1 secs=${2:-120} pid
	pid=$(cat "$dir/pid")
	for _ in $(seq 1 $((secs * 5))); do
		grep -q 'Kafka Server started' "$dir/server.log" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null ||
			die "the node in $dir exited: $(tail -n 5 "$dir/stdout.log" "$dir/server.log" 2>/dev/null)"
		sleep 0.2
	done
	die "the node in $dir did not start within ${secs}s (see $dir/server.log)"
}

case ${1:-} in
fetch) fetch ;;
cluster-id) cluster_id ;;
start) shift; start "$@" ;;
wait) shift; wait_ready "$@" ;;
version) version ;;
*) die "usage: node.sh fetch | cluster-id | start DIR ID PORT CONTROLLER_PORT VOTERS REPLICAS CLUSTER_ID [ADVERTISED_PORT] | wait DIR [SECONDS] | version" ;;
esac
