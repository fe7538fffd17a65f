#!/usr/bin/env python3
"""A TCP proxy on loopback for fault tests: faultproxy.py LISTEN_PORT
TARGET_PORT MODE_FILE MAX_SECONDS. MODE_FILE holds "pass" (forward) or
"reset" (accept, then close with a TCP reset). It exits by itself after
MAX_SECONDS. Only 127.0.0.1 is ever used."""
import os
import socket
import struct
import sys
import threading
import time

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
mode_file, deadline = sys.argv[3], time.time() + float(sys.argv[4])


def mode():
    try:
        with open(mode_file) as f:
            return f.read().strip()
    except OSError:
        return "pass"


def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def handle(client):
    if mode() == "reset":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        client.close()
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port), 5)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(64)
srv.settimeout(0.5)
while time.time() < deadline:
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
os._exit(0)
