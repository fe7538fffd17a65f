#!/usr/bin/env python3
"""A TCP proxy on loopback for fault tests:

    faultproxy.py LISTEN_PORT TARGET_PORT MODE_FILE MAX_SECONDS [PORT_FILE]

MODE_FILE holds one word, read again every 50 ms:
  pass    forward (the default, also when the file is missing)
  reset   new connections are accepted, then closed with a TCP reset;
          open connections are reset too
  stall   nothing moves: new connections are accepted but not forwarded,
          open ones forward nothing (in either direction) until the mode
          changes; then they carry on (or are reset, under reset)
LISTEN_PORT 0 takes a free port; PORT_FILE, if given, receives the port
actually listened on (written once listening). It exits by itself after
MAX_SECONDS. Only 127.0.0.1 is ever used."""
import os
import select
import socket
import struct
import sys
import threading
import time

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
mode_file, deadline = sys.argv[3], time.time() + float(sys.argv[4])
port_file = sys.argv[5] if len(sys.argv) > 5 else None

_mode = ["pass"]


def read_mode():
    try:
        with open(mode_file) as f:
            return f.read().strip() or "pass"
    except OSError:
        return "pass"


def mode_watcher():
    while True:
        _mode[0] = read_mode()
        time.sleep(0.05)


def mode():
    return _mode[0]


def reset(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def relay(client, upstream):
    """Forward both ways in one thread, looking at the mode between
    reads, so a mode change reaches connections that are already open."""
    peer = {client: upstream, upstream: client}
    try:
        while time.time() < deadline:
            m = mode()
            if m == "reset":
                reset(client)
                reset(upstream)
                return
            if m == "stall":
                time.sleep(0.05)
                continue
            r, _, _ = select.select([client, upstream], [], [], 0.1)
            for s in r:
                data = s.recv(65536)
                if not data:
                    close(client)
                    close(upstream)
                    return
                peer[s].sendall(data)
    except OSError:
        pass
    close(client)
    close(upstream)


def handle(client):
    while mode() == "stall" and time.time() < deadline:
        time.sleep(0.05)
    if mode() == "reset":
        reset(client)
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port), 5)
    except OSError:
        reset(client)
        return
    relay(client, upstream)


_mode[0] = read_mode()
threading.Thread(target=mode_watcher, daemon=True).start()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(64)
srv.settimeout(0.5)
if port_file:
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.rename(tmp, port_file)
while time.time() < deadline:
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        continue
    except OSError:
        continue
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
os._exit(0)
