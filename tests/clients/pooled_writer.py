#!/usr/bin/python3
"""A pooled application writer, as production pools behave: SQLAlchemy's
QueuePool over PyMySQL, persistent connections, a connection dropped only on a
disconnect error, the host name resolved again on every new connection.

Writes one row per transaction into cutover_probe.pool_writes from THREADS
threads, together at most RATE commits a second (a payment service's steady
traffic, which replicas can follow), until DURATION seconds pass or SIGTERM, then prints one JSON document:
every commit as [milliseconds since the Unix epoch, server_id], the errors
(counted, the first ones kept), and how many connections the pool opened.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

import sqlalchemy
from sqlalchemy import event, text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-env", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=400.0)
    args = parser.parse_args()

    password = os.environ[args.password_env]
    url = sqlalchemy.engine.URL.create(
        "mysql+pymysql",
        username=args.user,
        password=password,
        host=args.host,
        port=args.port,
    )
    engine = sqlalchemy.create_engine(
        url,
        poolclass=sqlalchemy.pool.QueuePool,
        pool_size=args.threads,
        max_overflow=0,
        pool_timeout=5,
        connect_args={"connect_timeout": 2, "read_timeout": 5, "write_timeout": 5},
    )
    opened = [0]
    lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        with lock:
            opened[0] += 1
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT @@server_id")
        dbapi_connection.server_id = cursor.fetchone()[0]
        cursor.close()

    with engine.begin() as connection:
        connection.execute(text("CREATE DATABASE IF NOT EXISTS cutover_probe"))
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS cutover_probe.pool_writes ("
                "id BIGINT AUTO_INCREMENT PRIMARY KEY, thread INT NOT NULL, "
                "at_ms BIGINT NOT NULL)"
            )
        )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.time() + args.duration
    commits = []
    errors = []
    error_count = [0]

    interval = args.threads / args.rate

    def writer(number):
        insert = text("INSERT INTO cutover_probe.pool_writes (thread, at_ms) VALUES (:thread, :at)")
        next_at = time.monotonic()
        while not stop.is_set() and time.time() < deadline:
            next_at = max(next_at + interval, time.monotonic() - interval)
            time.sleep(max(0.0, next_at - time.monotonic()))
            try:
                with engine.begin() as connection:
                    connection.execute(insert, {"thread": number, "at": int(time.time() * 1000)})
                    server_id = connection.connection.dbapi_connection.server_id
                at = int(time.time() * 1000)
                with lock:
                    commits.append([at, server_id])
            except Exception as error:  # noqa: BLE001 - an application logs and retries
                with lock:
                    error_count[0] += 1
                    if len(errors) < 50:
                        errors.append([int(time.time() * 1000), str(error).splitlines()[0][:200]])
                time.sleep(0.005)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    json.dump(
        {
            "commits": commits,
            "errors": errors,
            "error_count": error_count[0],
            "connections_opened": opened[0],
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
