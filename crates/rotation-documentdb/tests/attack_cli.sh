#!/usr/bin/env bash
# Hostile CLI checks of the DocumentDB engine (wt-atk2): kill -9 of `rotate run` at random
# points then resume/abort (no lockout), two `rotate run` at once, no secret in -vv output.
# Usage: ROTATE=target/debug/rotate crates/rotation-documentdb/tests/attack_cli.sh [ITER]
# Needs .venv (SecantusDB, pymongo). Exits non-zero on the first lockout or leak.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ROTATE=${ROTATE:-$ROOT/target/debug/rotate}
PY=$ROOT/.venv/bin/python
ITER=${1:-12}
W=$(mktemp -d /tmp/atk2-cli.XXXXXX)
PORT=$($PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
echo -n 'Root-Passw0rd-1' >"$W/adminpw"
$PY "$ROOT/scripts/secantus_server.py" --port "$PORT" --storage-path "$W/db" --admin root \
  --admin-password-file "$W/adminpw" --ready-file "$W/ready" >"$W/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do [ -e "$W/ready" ] && break; sleep 0.2; done
[ -e "$W/ready" ] || { echo "server did not start"; exit 2; }

admin() { $PY -c "
import sys, json
from pymongo import MongoClient
db = MongoClient(host='localhost', port=$PORT, username='root', password='Root-Passw0rd-1', authSource='admin', directConnection=True, tls=False)
$1"; }
logs_in() { LU="$1" LP="$2" LD="$3" $PY -c "
import os
from pymongo import MongoClient
from pymongo.errors import OperationFailure
c = MongoClient(host='localhost', port=$PORT, username=os.environ['LU'], password=os.environ['LP'], authSource=os.environ['LD'], directConnection=True, tls=False, serverSelectionTimeoutMS=5000)
try:
    c[os.environ['LD']].command('ping'); print('ok')
except OperationFailure:
    print('refused')"; }

admin "db.admin.command('createRole', 'selfService', privileges=[{'resource': {'cluster': True}, 'actions': ['changeOwnPassword']}, {'resource': {'db': '', 'collection': ''}, 'actions': ['changeOwnPassword']}], roles=[])"
admin "db.admin.command('createUser', 'app', pwd='Initial-Passw0rd', roles=[{'role': 'selfService', 'db': 'admin'}])"
STORE="file:$W/store.json"
init=$(printf '{"engine":"mongo","host":"localhost","port":%s,"username":"app","password":"Initial-Passw0rd","ssl":false}' "$PORT")
$PY - "$W/store.json" "$init" <<'EOF2'
import json, sys, uuid
json.dump({"secrets": {"app": {"arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf",
  "versions": [{"id": str(uuid.uuid4()), "stages": ["AWSCURRENT"], "value": sys.argv[2], "created": 1}]}}},
  open(sys.argv[1], "w"))
EOF2
chmod 600 "$W/store.json"
stage_pw() { $PY - "$W/store.json" "$1" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d["secrets"]["app"]["versions"]:
    if sys.argv[2] in v["stages"] and v.get("value"):
        print(json.loads(v["value"])["password"])
EOF2
}
all_pw() { $PY - "$W/store.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d["secrets"]["app"]["versions"]:
    if v.get("value"): print(json.loads(v["value"])["password"])
EOF2
}
fail=0
for i in $(seq "$ITER"); do
  delay=$(awk -v s=$RANDOM 'BEGIN{srand(s); printf "%.3f", rand()*0.6}')
  "$ROTATE" --store "$STORE" -vv run app --strategy single-user >"$W/run.$i.out" 2>&1 &
  pid=$!
  sleep "$delay"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  if (( i % 2 )); then op=resume; else op=abort; fi
  "$ROTATE" --store "$STORE" -vv $op app --strategy single-user >"$W/$op.$i.out" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then echo "iter $i: $op exited $rc"; cat "$W/$op.$i.out" | tail -3; fi
  cur=$(stage_pw AWSCURRENT)
  pend=$(stage_pw AWSPENDING)
  st=$(logs_in app "$cur" admin)
  echo "iter $i: kill after ${delay}s, $op rc=$rc, AWSCURRENT logs in: $st, pending left: ${pend:+yes}"
  if [ $rc -eq 3 ] && [ -n "$pend" ]; then echo "  refused with pending in flight:"; grep -v "^ *$" "$W/$op.$i.out" | tail -3 | cut -c1-400; fi
  if [ "$st" != ok ]; then echo "LOCKOUT at iter $i"; tail -5 "$W/$op.$i.out"; fail=1; break; fi
  for p in $(all_pw); do
    if grep -F -q -- "$p" "$W"/*.out; then echo "iter $i: a password appears in -vv output"; fail=1; fi
  done
done
# Two runs at once: one must exit 3 and the secret must stay usable.
"$ROTATE" --store "$STORE" run app --strategy single-user >"$W/a.out" 2>&1 & a=$!
"$ROTATE" --store "$STORE" run app --strategy single-user >"$W/b.out" 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
echo "concurrent runs exited $ra and $rb"
"$ROTATE" --store "$STORE" status app
echo "after concurrent runs, AWSCURRENT logs in: $(logs_in app "$(stage_pw AWSCURRENT)" admin)"
exit $fail
