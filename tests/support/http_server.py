"""A local file server for tests: Range requests (206) and scripted faults per path.

Python's `http.server` ignores `Range` (it answers 200), so resumable downloads need this
handler. Usage:

    faults = {"/big.bin": [Fault("status", times=2, status=503), Fault("drop")]}
    with serve(tmp_path, faults=faults) as server:
        download(server.url + "/big.bin", dest)
        assert any(r.range for r in server.requests)

Faults for a path are consumed in order, each for `times` requests:
  status        answer `status` (500, 503, 404, ...) with a short body
  drop          send headers and `after_bytes` of the body, then reset the connection (RST)
  truncate      send headers and `after_bytes` of the body, then close cleanly (FIN)
  ignore_range  answer 200 with the whole file even when a Range was asked
  stall         sleep `delay` seconds, then hang up without answering (recorded with status 0);
                with `after_bytes`, pause that long mid-body instead
  drip          send the headers, then the body `after_bytes` bytes at a time (default 1), `delay`
                seconds apart (a server that never trips a per-read timeout but never finishes)
  drip_headers  send the status line, then one byte of a header line every `delay` seconds, forever

`routes` map a path to a function of the parsed query string returning (status, content type,
body), for endpoints such as the OPUS API (`/opusapi/?corpus=...`); faults apply to them too.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

__all__ = ["Fault", "FileServer", "Request", "serve"]

FaultKind = Literal["status", "drop", "truncate", "ignore_range", "stall", "drip", "drip_headers"]
Route = Callable[[dict[str, list[str]]], tuple[int, str, bytes]]


@dataclass
class Fault:
    kind: FaultKind
    times: int = 1
    status: int = 503
    after_bytes: int | None = None  # drop/truncate/stall point in the body; default: half of it
    delay: float = 2.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int  # status the server chose (before any injected connection fault)
    query: str = ""


@dataclass
class FileServer:
    url: str
    root: Path
    faults: dict[str, list[Fault]]
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(path) or []
            while queue and queue[0].times == 0:
                queue.pop(0)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            return fault

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal["invalid"]:
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return "invalid"
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), (int(last) if last else size - 1)
    if start >= size or end < start:
        return "invalid"
    return start, min(end, size - 1)


def _make_handler(server_state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            try:
                self._serve(body=True)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. timed out during a stall)

        def _record(self, path: str, status: int) -> None:
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            with server_state.lock:
                server_state.requests.append(Request(self.command, path, self.headers.get("Range"), status, query))

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends RST, which the client sees as "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def _serve(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            fault = server_state.take_fault(path)
            target = (server_state.root / path.lstrip("/")).resolve()
            if fault and fault.kind == "stall" and fault.after_bytes is None:
                self._record(path, 0)  # 0: never answered
                time.sleep(fault.delay)
                self.close_connection = True
                return
            if fault and fault.kind == "drip_headers":
                self._record(path, 200)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while True:  # ends when the client hangs up (BrokenPipeError, handled by do_GET)
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    time.sleep(fault.delay)
            if fault and fault.kind == "status":
                self._record(path, fault.status)
                self.send_error(fault.status)
                return
            route = server_state.routes.get(path)
            if route is not None:
                query = urllib.parse.parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
                status, content_type, data = route(query)
                if status != 200:
                    self._record(path, status)
                    self.send_error(status)
                    return
            elif not target.is_file() or server_state.root.resolve() not in target.parents:
                self._record(path, 404)
                self.send_error(404)
                return
            else:
                content_type, data = "application/octet-stream", target.read_bytes()
            wanted = (
                None if (fault and fault.kind == "ignore_range") else _parse_range(self.headers.get("Range"), len(data))
            )
            if wanted == "invalid":
                self._record(path, 416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if wanted is None:
                status, payload = 200, data
            else:
                start, end = wanted
                status, payload = 206, data[start : end + 1]
            self._record(path, status)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if fault and fault.kind == "drip":
                step = fault.after_bytes or 1
                for start in range(0, len(payload), step):
                    self.wfile.write(payload[start : start + step])
                    self.wfile.flush()
                    time.sleep(fault.delay)
                return
            if fault and fault.kind in ("drop", "truncate", "stall") and payload:
                cut = fault.after_bytes if fault.after_bytes is not None else len(payload) // 2
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                if fault.kind == "stall":
                    time.sleep(fault.delay)
                    self.wfile.write(payload[cut:])
                elif fault.kind == "drop":
                    self._reset()
                else:
                    self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


@contextlib.contextmanager
def serve(
    directory: str | Path, faults: dict[str, list[Fault]] | None = None, routes: dict[str, Route] | None = None
) -> Iterator[FileServer]:
    """Serve `directory` on 127.0.0.1 (random port) in a thread; yields the state with `.url`."""
    state = FileServer(
        url="",
        root=Path(directory),
        faults={k: list(v) for k, v in (faults or {}).items()},
        routes=dict(routes or {}),
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
