# Sourced by test.sh and bench/run.sh: install (apt-get, if missing) and start the real servers the
# tests and benchmarks use, on loopback. Idempotent: a running server is left as it is.
# Redis 127.0.0.1:6379; PostgreSQL 127.0.0.1:5432, user postgres, password postgres. Prometheus and
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

ensure_servers() {
  ensure_packages
  ensure_redis
  ensure_postgres
}
