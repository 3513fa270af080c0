"""The host <-> board-agent wire protocol, shared by both sides (standard library + numpy only: the
agent runs on the board's Python, next to pynq).

A message is one JSON line (UTF-8, '\n'-terminated) followed by exactly `header["nbytes"]` raw bytes
(absent or 0: no payload). Arrays travel as payloads with `dtype` and `shape` in the header. Every
request gets one reply: `{"ok": true, ...}` or `{"ok": false, "error": "<one line>"}`.

Requests (op):
  hello                              -> board, overlay, ip, design (decoded HWINFO), clock_hz, rails
  program   key, payload = .npz      -> stores an accelerator program (targets/fpga/layer.py Program.save)
  run       key, dtype, shape, payload = input levels
                                     -> payload = output levels (dtype, shape), counters (the RTL's 64-bit
                                        counters), wall_s (board time from start to done)
  model     tag, layers, suffix, payload = the ARM-side library (.so, or .tar linked on the board)
                                     -> the agent runs the graph; its offloaded layers call the accelerator
  infer     dtype, shape, payload = input  -> payload = output (dtype, shape), counters (one per layer run)
  time      n                        -> seconds (n inferences of the last input, board clock), counters
  record_start  rails, period_s      -> starts pynq.DataRecorder on the named rails (all when empty)
  mark      label                    -> DataRecorder.mark()
  record_stop                        -> payload = DataRecorder.frame.to_csv() (UTF-8)
  snapshot                           -> fabric_hz, temps_c, info
  bye                                -> closes the connection
"""

from __future__ import annotations

import json
import socket
from typing import BinaryIO

import numpy as np

VERSION = 1
DEFAULT_PORT = 7967
MAX_HEADER = 1 << 20  # a header line longer than this is a protocol error, not a payload


class ProtocolError(RuntimeError):
    """The peer closed the connection or sent something that is not this protocol."""


def send(f: BinaryIO, header: dict, payload: bytes = b"") -> None:
    header = {**header, "nbytes": len(payload)}
    f.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
    if payload:
        f.write(payload)
    f.flush()


def recv(f: BinaryIO) -> tuple[dict, bytes]:
    line = f.readline(MAX_HEADER)
    if not line:
        raise ProtocolError("connection closed by the peer")
    if not line.endswith(b"\n"):
        raise ProtocolError("truncated or oversized header line")
    try:
        header = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not a protocol header: {line[:80]!r}") from None
    if not isinstance(header, dict):
        raise ProtocolError("a header must be a JSON object")
    n = int(header.get("nbytes") or 0)
    payload = f.read(n) if n else b""
    if len(payload) != n:
        raise ProtocolError(f"connection closed after {len(payload)} of {n} payload bytes")
    return header, payload


def array_header(a: np.ndarray) -> dict:
    return {"dtype": a.dtype.str, "shape": list(a.shape)}


def to_array(header: dict, payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"]).copy()


def contiguous(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


class Connection:
    """A client end: one request, one reply; a failed reply raises AgentError with the agent's line."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small request/reply messages
        self.f = self.sock.makefile("rwb")

    def call(self, op: str, payload: bytes = b"", **fields) -> tuple[dict, bytes]:
        send(self.f, {"op": op, **fields}, payload)
        header, data = recv(self.f)
        if not header.get("ok"):
            raise AgentError(str(header.get("error") or f"agent failed '{op}'"))
        return header, data

    def close(self) -> None:
        try:
            self.f.close()
        finally:
            self.sock.close()


class AgentError(RuntimeError):
    """The agent answered a request with an error (its one-line message)."""
