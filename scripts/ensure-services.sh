#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis the tests use are up; start them when they are not.
set -u

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! redis_up; then
  echo "starting redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
if ! pg_up; then
  echo "starting postgresql on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
for _ in $(seq 1 50); do
  if redis_up && pg_up; then exit 0; fi
  sleep 0.2
done
redis_up || echo "warning: redis is not reachable on 127.0.0.1:6379" >&2
pg_up || echo "warning: postgresql is not reachable on 127.0.0.1:5432" >&2
exit 0
