# Sourced by test.sh and bench/run.sh: install (apt-get, if missing) and start the real servers the
# tests and benchmarks use, on loopback. Idempotent: a running server is left as it is.
# Redis 127.0.0.1:6379, a Redis Cluster 127.0.0.1:7001-7003; PostgreSQL 127.0.0.1:5432, user postgres, password postgres. Prometheus and
# Chromium are only installed: the tests that use them start their own.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v python3 >/dev/null || missing+=(python3)
  # Without recommends: Prometheus alone, not its exporters and their services.
  local lean=()
  command -v prometheus >/dev/null || lean+=(prometheus)
  command -v chromium >/dev/null || lean+=(chromium)
  if [ ${#missing[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
    echo "installing: ${missing[*]} ${lean[*]}"
    as_root apt-get update -qq
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#lean[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
  fi
}

ensure_redis() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "redis did not start" >&2; return 1; }
}

# A Redis Cluster of three masters on 127.0.0.1:7001-7003 (no replicas), for the tests that run the
# data plane on a cluster. Its files live in /tmp/tsp-redis-cluster; a cluster that is up is kept.
REDIS_CLUSTER_PORTS="7001 7002 7003"
ensure_redis_cluster() {
  local dir=/tmp/tsp-redis-cluster port nodes=()
  if redis-cli -p 7001 cluster info 2>/dev/null | grep -q "cluster_state:ok"; then return 0; fi
  mkdir -p "$dir"
  for port in $REDIS_CLUSTER_PORTS; do
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
      rm -f "$dir/nodes-$port.conf"
      redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
        --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" --save "" --appendonly no >/dev/null
    fi
    nodes+=("127.0.0.1:$port")
  done
  for port in $REDIS_CLUSTER_PORTS; do
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ! redis-cli -p 7001 cluster info | grep -q "cluster_known_nodes:3"; then
    # A half-made cluster (a node restarted with its slots lost) is made again from empty nodes.
    for port in $REDIS_CLUSTER_PORTS; do redis-cli -p "$port" flushall >/dev/null; redis-cli -p "$port" cluster reset hard >/dev/null; done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  for _ in $(seq 100); do redis-cli -p 7001 cluster info | grep -q "cluster_state:ok" && break; sleep 0.1; done
  redis-cli -p 7001 cluster info | grep -q "cluster_state:ok" || { echo "the redis cluster did not form" >&2; return 1; }
}

ensure_postgres() {
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_lsclusters -h | grep -q "^$version main" || as_root pg_createcluster "$version" main >/dev/null
    as_root pg_ctlcluster "$version" main start
    for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 -q || { echo "postgresql did not start" >&2; return 1; }
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres';\"" >/dev/null
}

# What earlier test runs left: their PostgreSQL databases (one per journal test class or cluster
# test, ~7.5 MB each) and their temporary files. Only what is more than an hour old, so a suite running
# beside this one keeps its own.
drop_stale_test_data() {
  local stale
  stale=$(PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -At -c \
    "SELECT datname FROM pg_database WHERE datname LIKE 'tsp\\_test\\_%' AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour'") || return 0
  for database in $stale; do
    PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null || true
  done
  [ -z "$stale" ] || echo "dropped $(echo "$stale" | wc -l) test databases left by earlier runs"
  find "${TMPDIR:-/tmp}/tsp-tests" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null || true
}

ensure_servers() {
  ensure_packages
  ensure_redis
  ensure_redis_cluster
  ensure_postgres
}
