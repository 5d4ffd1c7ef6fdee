"""The "services host" of the multi-host test: PostgreSQL, Redis and SeaweedFS S3 on one address.

    ip netns exec NS python -m tests.scaleout.services --host 10.x.y.1 --dir DIR

Run inside a network namespace, with devstack's server classes bound to the namespace's
address. Writes DIR/env.json (how to reach the three, mode 0600) once all answer, then
waits; SIGTERM stops the servers (and they die with this process however it dies).
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
from pathlib import Path

from devstack.servers import PostgresServer, RedisServer, S3Server, free_port, write_private


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    base: Path = args.dir
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    access, secret = "jp" + secrets.token_hex(8), secrets.token_urlsafe(30)
    servers = [PostgresServer(base / "postgres", free_port(), durable=False, host=args.host),
               RedisServer(base / "redis", free_port(), durable=False, host=args.host),
               S3Server(base / "s3", access, secret, host=args.host)]
    try:
        for server in servers:
            server.start()
        postgres, redis, s3 = servers
        env = {"DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "S3_ENDPOINT_URL": s3.url,
               "S3_ACCESS_KEY_ID": access, "S3_SECRET_ACCESS_KEY": secret}
        write_private(base / "env.json.part", json.dumps(env))
        (base / "env.json.part").rename(base / "env.json")
        stop.wait()
    finally:
        for server in reversed(servers):
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
