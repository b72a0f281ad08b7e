#!/usr/bin/env bash
# Brings up the services the tests and benchmarks use, on 127.0.0.1, idempotently:
#   PostgreSQL 5432  (trust on loopback, users postgres and root, database test)
#   MariaDB    3306  (root without a password, database test)
#   Kafka      9092  (Apache Kafka in KRaft mode, jars from Maven Central)
#   RabbitMQ   5672  (guest/guest, consistent-hash exchange plugin enabled)
#
#   services.sh up      start what is not running (installing PostgreSQL and MariaDB
#                       from Debian's packages when they are missing, as root)
#   services.sh down    stop what 'up' started, by the PIDs it recorded
#   services.sh cluster start a 3-broker Kafka cluster on 19092-19094 (make kafka-cluster)
#
# A service that already answers on its port is left alone, and one whose address is
# set in the environment (OUTBOX_POSTGRES_URL, OUTBOX_MYSQL_DSN, OUTBOX_KAFKA_BROKERS,
# OUTBOX_AMQP_URL)
# is not started at all. State lives in .cache/services (PIDs, logs) and .cache/kafka.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=$root/.cache/services
mkdir -p "$state"

say() { echo "services: $*"; }
die() { echo "services: error: $*" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name, port, seconds
	for _ in $(seq 1 $(($3 * 5))); do
		listening "$2" && return 0
		sleep 0.2
	done
	die "$1 did not answer on 127.0.0.1:$2 within $3 s"
}

apt_updated=
apt_install() { # packages...
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
		die "$* missing and this is not a Debian machine with root: install it yourself, or point the tests at a running server (see README)"
	if [ -z "$apt_updated" ]; then
		say "apt-get update"
		apt-get update -qq >"$state/apt.log" 2>&1 || die "apt-get update failed (see $state/apt.log)"
		apt_updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$state/apt.log" 2>&1 ||
		die "apt-get install $* failed (see $state/apt.log)"
}

postgres_up() {
	if [ -n "${OUTBOX_POSTGRES_URL:-}" ]; then say "PostgreSQL: OUTBOX_POSTGRES_URL is set, not starting one"; return; fi
	if listening 5432; then say "PostgreSQL: already running on 127.0.0.1:5432, left alone"; return; fi
	command -v pg_lsclusters >/dev/null || apt_install postgresql
	local cluster ver name port dir
	cluster=$(pg_lsclusters -h | head -n 1)
	if [ -z "$cluster" ]; then
		ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
		say "PostgreSQL: creating cluster $ver/main"
		pg_createcluster "$ver" main >/dev/null
		cluster=$(pg_lsclusters -h | head -n 1)
	fi
	read -r ver name port _ <<<"$cluster"
	[ "$port" = 5432 ] || die "PostgreSQL cluster $ver/$name listens on port $port, not 5432"
	local hba=/etc/postgresql/$ver/$name/pg_hba.conf
	if ! grep -q '^# outbox tests' "$hba"; then
		say "PostgreSQL: trust authentication on 127.0.0.1 ($hba)"
		{ printf '# outbox tests: trust on loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'; cat "$hba"; } >"$hba.new"
		chown --reference="$hba" "$hba.new"; chmod --reference="$hba" "$hba.new"; mv "$hba.new" "$hba"
	fi
	say "PostgreSQL: starting cluster $ver/$name"
	pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || die "pg_ctlcluster $ver $name start failed"
	wait_port PostgreSQL 5432 60
	dir=$(pg_conftool -s "$ver" "$name" show data_directory 2>/dev/null || echo "/var/lib/postgresql/$ver/$name")
	head -n 1 "$dir/postmaster.pid" >"$state/postgres.pid"
	for _ in $(seq 1 50); do psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
	psql -h 127.0.0.1 -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<-'SQL' >/dev/null || die "PostgreSQL: creating role root and database test failed"
		SELECT 'CREATE ROLE root SUPERUSER LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'root') \gexec
		SELECT 'CREATE DATABASE test' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'test') \gexec
	SQL
	say "PostgreSQL: up on 127.0.0.1:5432 (pid $(cat "$state/postgres.pid"))"
}

mariadb_up() {
	if [ -n "${OUTBOX_MYSQL_DSN:-}" ]; then say "MariaDB: OUTBOX_MYSQL_DSN is set, not starting one"; return; fi
	if listening 3306; then say "MariaDB: already running on 127.0.0.1:3306, left alone"; return; fi
	command -v mariadbd >/dev/null || apt_install mariadb-server mariadb-client
	# The package may have started a server on its socket only; ours listens on loopback.
	if [ -f /run/mysqld/mysqld.pid ] && kill -0 "$(cat /run/mysqld/mysqld.pid)" 2>/dev/null; then
		kill "$(cat /run/mysqld/mysqld.pid)"
		for _ in $(seq 1 100); do [ -f /run/mysqld/mysqld.pid ] || break; sleep 0.2; done
	fi
	if [ ! -d /var/lib/mysql/mysql ]; then
		say "MariaDB: initializing /var/lib/mysql"
		mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$state/mariadb-install.log" 2>&1 ||
			die "mariadb-install-db failed (see $state/mariadb-install.log)"
	fi
	mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
	say "MariaDB: starting"
	setsid mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 --socket=/run/mysqld/mysqld.sock \
		</dev/null >"$state/mariadb.log" 2>&1 &
	echo $! >"$state/mariadb.pid"
	wait_port MariaDB 3306 60
	mariadb --socket=/run/mysqld/mysqld.sock -u root <<-'SQL' || die "MariaDB: setting up root and database test failed"
		ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
		CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
		CREATE DATABASE IF NOT EXISTS test;
	SQL
	say "MariaDB: up on 127.0.0.1:3306 (pid $(cat "$state/mariadb.pid"))"
}

kafka_up() {
	if [ -n "${OUTBOX_KAFKA_BROKERS:-}" ]; then say "Kafka: OUTBOX_KAFKA_BROKERS is set, not starting one"; return; fi
	if listening 9092; then say "Kafka: already running on 127.0.0.1:9092, left alone"; return; fi
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	local node=$root/scripts/kafka/node.sh dir=$root/.cache/kafka/single
	say "Kafka: Apache Kafka $("$node" version) jars in .cache/kafka/libs"
	"$node" fetch
	mkdir -p "$dir"
	[ -s "$dir/cluster-id" ] || "$node" cluster-id >"$dir/cluster-id"
	say "Kafka: starting a KRaft broker (log in .cache/kafka/single/server.log)"
	"$node" start "$dir" 1 9092 9093 1@127.0.0.1:9093 1 "$(cat "$dir/cluster-id")" >"$state/kafka.pid"
	"$node" wait "$dir" 120
	say "Kafka: up on 127.0.0.1:9092 (pid $(cat "$state/kafka.pid"))"
}

rabbitmq_up() {
	if [ -n "${OUTBOX_AMQP_URL:-}" ]; then say "RabbitMQ: OUTBOX_AMQP_URL is set, not starting one"; return; fi
	if listening 5672; then say "RabbitMQ: already running on 127.0.0.1:5672, left alone"; return; fi
	command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
	local env=/etc/rabbitmq/rabbitmq-env.conf
	grep -q '^NODE_IP_ADDRESS=127.0.0.1' "$env" 2>/dev/null || echo 'NODE_IP_ADDRESS=127.0.0.1' >>"$env"
	rabbitmq-plugins enable --offline rabbitmq_consistent_hash_exchange >"$state/rabbitmq-plugins.log" 2>&1 ||
		die "RabbitMQ: enabling the consistent-hash exchange failed (see $state/rabbitmq-plugins.log)"
	say "RabbitMQ: starting"
	setsid rabbitmq-server </dev/null >"$state/rabbitmq.log" 2>&1 &
	wait_port RabbitMQ 5672 120
	rabbitmqctl eval 'list_to_integer(os:getpid()).' 2>/dev/null | tail -n 1 >"$state/rabbitmq.pid"
	say "RabbitMQ: up on 127.0.0.1:5672 (pid $(cat "$state/rabbitmq.pid"))"
}

cluster_up() {
	local node=$root/scripts/kafka/node.sh base=$root/.cache/kafka/cluster id voters
	"$node" fetch
	mkdir -p "$base"
	[ -s "$base/cluster-id" ] || "$node" cluster-id >"$base/cluster-id"
	id=$(cat "$base/cluster-id")
	voters=1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194
	for n in 1 2 3; do
		if listening $((19091 + n)); then say "Kafka cluster: node $n already running"; continue; fi
		"$node" start "$base/node-$n" "$n" $((19091 + n)) $((19191 + n)) "$voters" 3 "$id" >"$state/kafka-cluster-$n.pid"
	done
	for n in 1 2 3; do "$node" wait "$base/node-$n" 120; done
	say "Kafka cluster: up on 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 (replication 3, min.insync.replicas 2)"
}

down() {
	local f pid name
	for f in "$state"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f"); name=$(basename "$f" .pid)
		if kill -0 "$pid" 2>/dev/null; then
			say "stopping $name (pid $pid)"
			# SIGINT is PostgreSQL's fast shutdown; the others stop cleanly on SIGTERM.
			if [ "$name" = postgres ]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
			for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -0 "$pid" 2>/dev/null && { say "$name did not stop in 30 s, killing it"; kill -KILL "$pid"; }
		fi
		rm -f "$f"
	done
}

case ${1:-up} in
up) postgres_up; mariadb_up; kafka_up; rabbitmq_up ;;
down) down ;;
cluster) cluster_up ;;
*) die "usage: services.sh up | down | cluster" ;;
esac
