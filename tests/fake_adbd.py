"""The device side of the ADB protocol on 127.0.0.1: a phone stand-in for adb clients (test double at
the hardware boundary). Follows AOSP's protocol.txt (CNXN/AUTH/OPEN/OKAY/WRTE/CLSE) and SYNC.TXT
(SEND/DATA/DONE/RECV/STAT/QUIT); shell services run with this machine's sh."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading


def _id(tag: bytes) -> int:
    return int.from_bytes(tag, "little")


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_id(t) for t in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3


class FakeAdbd:
    def __init__(self, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        self.accepted_keys: list[bytes] = []  # public keys the "user" allowed on first connection
        self.commands: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closing = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self._closing = True
        self.sock.close()

    # -- wire ------------------------------------------------------------------------------------------
    @staticmethod
    def _send(conn, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        head = struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)
        conn.sendall(head + data)

    @staticmethod
    def _recv_exact(conn, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _read(self, conn) -> tuple[int, int, int, bytes]:
        cmd, a0, a1, n, _crc, magic = struct.unpack("<6I", self._recv_exact(conn, 24))
        assert magic == cmd ^ 0xFFFFFFFF, "bad magic"
        return cmd, a0, a1, self._recv_exact(conn, n) if n else b""

    def _write_stream(self, conn, mine: int, theirs: int, data: bytes) -> None:
        self._send(conn, WRTE, mine, theirs, data)
        while True:  # the client acknowledges every WRTE with OKAY
            cmd, *_ = self._read(conn)
            if cmd == OKAY:
                return

    # -- sessions ----------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn) -> None:
        next_id = 1
        sync: dict[int, dict] = {}
        try:
            while True:
                cmd, a0, a1, data = self._read(conn)
                if cmd == CNXN:
                    if self.require_auth:
                        self._send(conn, AUTH, AUTH_TOKEN, 0, os.urandom(20))
                    else:
                        self._connected(conn)
                elif cmd == AUTH and a0 == AUTH_SIGNATURE:
                    self._send(conn, AUTH, AUTH_TOKEN, 0, os.urandom(20))  # unknown key: ask again
                elif cmd == AUTH and a0 == AUTH_RSAPUBLICKEY:
                    self.accepted_keys.append(data)  # the user taps "Allow USB debugging"
                    self._connected(conn)
                elif cmd == OPEN:
                    dest = data.rstrip(b"\0").decode()
                    mine, next_id = next_id, next_id + 1
                    self._send(conn, OKAY, mine, a0)
                    if dest.startswith("shell:"):
                        self.commands.append(dest[6:])
                        r = subprocess.run(["sh", "-c", dest[6:]], capture_output=True)
                        if r.stdout:
                            self._write_stream(conn, mine, a0, r.stdout)
                        self._send(conn, CLSE, mine, a0)
                    elif dest.startswith("sync:"):
                        sync[a0] = {"mine": mine, "buf": b"", "file": None}
                    else:
                        self._send(conn, CLSE, mine, a0)
                elif cmd == WRTE and a0 in sync:
                    st = sync[a0]
                    self._send(conn, OKAY, st["mine"], a0)
                    st["buf"] += data
                    self._sync(conn, a0, st)
                elif cmd == CLSE and a0 in sync:  # the host closed an open stream: close our end too
                    self._send(conn, CLSE, sync.pop(a0)["mine"], a0)
        except (ConnectionError, OSError, AssertionError):
            conn.close()

    def _connected(self, conn) -> None:
        self._send(conn, CNXN, 0x01000000, 256 * 1024, b"device::ro.product.model=FakePhone;\0")

    def _sync(self, conn, theirs: int, st: dict) -> None:
        while len(st["buf"]) >= 8:
            tag, n = st["buf"][:4], struct.unpack("<I", st["buf"][4:8])[0]
            if tag == b"DONE":  # n is the mtime, no payload
                st["buf"] = st["buf"][8:]
                st["file"].close()
                st["file"] = None
                self._write_stream(conn, st["mine"], theirs, b"OKAY" + struct.pack("<I", 0))
                continue
            if tag == b"QUIT":
                st["buf"] = st["buf"][8:]
                self._send(conn, CLSE, st["mine"], theirs)
                continue
            if len(st["buf"]) < 8 + n:
                return
            payload, st["buf"] = st["buf"][8:8 + n], st["buf"][8 + n:]
            if tag == b"SEND":
                path, _, mode = payload.decode().rpartition(",")
                st["file"] = open(path, "wb")
                os.chmod(path, int(mode) & 0o777)
            elif tag == b"DATA":
                st["file"].write(payload)
            elif tag == b"STAT":
                p = payload.decode()
                s = os.stat(p) if os.path.exists(p) else None
                reply = struct.pack("<4I", _id(b"STAT"), s.st_mode if s else 0, s.st_size if s else 0,
                                    int(s.st_mtime) if s else 0)
                self._write_stream(conn, st["mine"], theirs, reply)
            elif tag == b"RECV":
                with open(payload.decode(), "rb") as f:
                    while chunk := f.read(64 * 1024):
                        self._write_stream(conn, st["mine"], theirs, b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                self._write_stream(conn, st["mine"], theirs, b"DONE" + struct.pack("<I", 0))
