#!/usr/bin/env bash
# Figures for issue 14's closing note (bench/results/import-agents.md), run from the repo
# root as root under the shared lock:
#   flock /tmp/strata-heavy.lock bash bench/import_agents.sh changes   # branch changes, ~1 GB
#   flock /tmp/strata-heavy.lock bash bench/import_agents.sh import    # import: base backup vs dump
# Everything runs in a temporary $STRATA_HOME on free ports and is stopped on exit.
set -euo pipefail
what=${1:?changes or import}
repo=$(pwd)
py=$repo/.venv/bin/python
bin=$($py -c 'from common.postgres import pg_bin_dir; print(pg_bin_dir())')
parent=$(mktemp -d /tmp/strata-import-agents-XXXXXX)
chmod 755 "$parent"
export STRATA_HOME=$parent/home
free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
strata() { $py -m strata.cli "$@"; }
field() { $py -c "import json, sys; print(json.load(sys.stdin)$1)"; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
source_pg=""
cleanup() {
  strata down --timeout 10 > /dev/null 2>&1 || true
  if [ -n "$source_pg" ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$source_pg" -m fast stop > /dev/null 2>&1 || true; fi
  rm -rf "$parent"
}
trap cleanup EXIT
strata up --port "$(free_port)" --metrics-port 0 --proxy-port 0 --console-port 0 --json > /dev/null

if [ "$what" = changes ]; then
  strata tenant create big --json > /dev/null
  uri=$(strata connect main --tenant big --json | field '["uri"]')
  echo "load: $(seconds "$bin/pgbench" -i -q -s 70 "$uri") s"
  echo "database size: $("$bin/psql" -Atc "SELECT pg_database_size(current_database())" "$uri") bytes"
  # a clean stop checkpoints main, so the fork starts without replaying the load's WAL
  strata compute stop main --tenant big --json > /dev/null
  strata branch create fork --tenant big --json > /dev/null
  fork=$(strata connect fork --tenant big --json | field '["uri"]')
  echo "update 10 %: $(seconds "$bin/psql" -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 10 = 0" "$fork") s"
  echo "branch changes, compute running (CHECKPOINT first): $(seconds strata branch changes fork --tenant big --json) s"
  for i in 1 2 3; do
    echo "branch changes, compute running, again: $(seconds strata branch changes fork --tenant big --json) s"
    echo "branch show (CLI start-up and one RPC): $(seconds strata branch show fork --tenant big --json) s"
  done
  strata compute stop fork --tenant big --json > /dev/null
  for i in 1 2 3; do
    echo "branch changes, no compute: $(seconds strata branch changes fork --tenant big --json) s"
  done
  strata branch changes fork --tenant big --json | $py -c '
import json, sys
body = json.load(sys.stdin)
for r in sorted(body["relations"], key=lambda r: -r["pages"])[:3]:
    print("  ", r["relation"], r["pages"], "pages", r["bytes"], "bytes")'
else
  mkdir "$parent/src" && chown postgres "$parent/src"
  source_pg=$parent/src/data
  port=$(free_port)
  runuser -u postgres -- "$bin/initdb" -D "$source_pg" -U postgres --auth-local=peer --auth-host=trust > /dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$source_pg" -w -l "$parent/src/log" -o "-p $port -k $parent/src -c listen_addresses=127.0.0.1" start > /dev/null
  src="postgresql://postgres@127.0.0.1:$port/postgres"
  "$bin/pgbench" -i -q -s 10 "$src" 2> /dev/null
  echo "source size: $("$bin/psql" -Atc "SELECT pg_database_size(current_database())" "$src") bytes"
  for round in 1 2; do
    echo "import by base backup: $(seconds strata tenant import "bb$round" --from "$src" --method base-backup --json) s"
    echo "import by dump: $(seconds strata tenant import "dump$round" --from "$src" --method dump --json) s"
  done
  for tenant in bb1 dump1; do
    u=$(strata connect main --tenant $tenant --json | field '["uri"]')
    echo "$tenant answers: $("$bin/psql" -Atc "SELECT count(*), sum(abalance) FROM pgbench_accounts" "$u")"
  done
  for tenant in bb1 bb2 dump1 dump2; do strata compute stop main --tenant $tenant --json > /dev/null || true; done
  for tenant in bb1 bb2 dump1 dump2; do strata tenant delete $tenant --yes --json > /dev/null 2>&1 || true; done
fi
