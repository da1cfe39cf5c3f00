"""SecantusDB (a MongoDB-wire server) for the rotation tests, standing in for DocumentDB.

- Authentication (SCRAM-SHA-256) is on. SecantusDB has no localhost exception, so its first
  admin is created here, in the same process, before the server asks for credentials and before
  the ready file tells the test it may connect; no restart is needed.
- It advertises DocumentDB's replica-set name (`rs0` by default) instead of its own.
- TLS with the given certificate when asked.
- When the process that started it (the test) dies, the server exits too.

Usage: secantus_server.py --port P --storage-path DIR --admin USER --admin-password-file F
                          --ready-file R [--replica-set rs0]
                          [--tls-cert-file C --tls-key-file K --tls-ca-file CA]
"""
import argparse
import os
import threading
import time

from pymongo import MongoClient
from secantus.server import SecantusDBServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--storage-path", required=True)
parser.add_argument("--admin", required=True)
parser.add_argument("--admin-password-file", required=True)
parser.add_argument("--ready-file", required=True)
parser.add_argument("--replica-set", default="rs0")
parser.add_argument("--tls-cert-file")
parser.add_argument("--tls-key-file")
parser.add_argument("--tls-ca-file")
args = parser.parse_args()

with open(args.admin_password_file, encoding="utf-8") as f:
    admin_password = f.read()

server = SecantusDBServer(
    host="127.0.0.1",
    port=args.port,
    storage_path=args.storage_path,
    require_auth=False,
    replica_set_name=args.replica_set,
    tls_cert_file=args.tls_cert_file,
    tls_key_file=args.tls_key_file,
)
server.start()

client = MongoClient(
    host="127.0.0.1",
    port=args.port,
    directConnection=True,
    tls=bool(args.tls_cert_file),
    tlsCAFile=args.tls_ca_file,
    serverSelectionTimeoutMS=15000,
)
client.admin.command(
    "createUser", args.admin, pwd=admin_password, roles=[{"role": "root", "db": "admin"}]
)
client.close()
# Every message after this one is checked for credentials.
server.require_auth = True

with open(args.ready_file, "w", encoding="utf-8") as f:
    f.write("ready\n")


def _exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


threading.Thread(target=_exit_with_parent, daemon=True).start()
server.wait()
