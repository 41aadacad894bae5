"""A socket-level HTTP server for failures that live below HTTP: bodies cut at any byte, stalls,
trickled headers, garbage, broken gzip, and TLS streams broken after the request was read.

It reads each request in full (headers and ``Content-Length`` body), records it, then plays the
``Behaviour`` scripted for it. With ``tls=True`` it serves HTTPS with a certificate made at start-up for
127.0.0.1; ``ca_file`` is that certificate, for clients to trust.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Behaviour:
    """What the server does once it has read a request.

    :param reply: the whole reply to send (status line, headers, body), or None to send nothing.
    :param cut_at: send only this many bytes of ``reply``, then ``then``.
    :param trickle: seconds between single bytes of ``reply`` (a slow loris).
    :param then: after sending: "close" (FIN), "reset" (RST), "stall" (keep the socket open, silent),
        "garbage" (send bytes that are not HTTP, or not TLS under TLS), "tls-break" (under TLS: write
        raw bytes under the TLS layer, corrupting the record stream), or "done" (close normally).
    """

    reply: bytes | None = None
    cut_at: int | None = None
    trickle: float = 0.0
    then: str = "done"


def http_reply(status: int, body: bytes | dict[str, Any] | str, headers: dict[str, str] | None = None,
               *, gzip_body: bool = False, content_length: int | None = None) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if gzip_body:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    all_headers.setdefault("Content-Length", str(len(body) if content_length is None else content_length))
    all_headers["Connection"] = "close"
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def ok_submit(job_id: str = "job-raw-1", coins: int = 2) -> bytes:
    return http_reply(200, {"code": 200, "message": "OK", "data": {"job_id": job_id, "consume_coins": coins}})


def ok_status(job_id: str = "job-1", status: str = "CONVERTING") -> bytes:
    return http_reply(200, {"code": 200, "message": "OK",
                            "data": {"job_id": job_id, "status": status, "res_url": "", "original_url": ""}})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


class RawServer:
    def __init__(self, *, tls: bool = False) -> None:
        self.behaviours: list[Behaviour] = []
        self.default = Behaviour(reply=ok_status())
        self.received: list[Received] = []
        self.tls = tls
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="hitpaw-raw-")
        self.ca_file = ""
        self._context: ssl.SSLContext | None = None
        if tls:
            cert, key = _self_signed(Path(self._tmp.name))
            self.ca_file = str(cert)
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def play(self, *behaviours: Behaviour) -> None:
        """Behaviours for the next requests, in order; after them, ``default``."""
        self.behaviours = list(behaviours)

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.received if path is None or r.path == path)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._open:
            try:
                conn.close()
            except OSError:
                pass
        self.sock.close()
        self._tmp.cleanup()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        conn: socket.socket = raw
        try:
            if self._context is not None:
                conn = self._context.wrap_socket(raw, server_side=True)
                self._open.append(conn)
            request = self._read_request(conn)
            if request is None:
                return
            self.received.append(request)
            behaviour = self.behaviours.pop(0) if self.behaviours else self.default
            self._play(raw, conn, behaviour)
        except (OSError, ssl.SSLError, ValueError):
            pass

    @staticmethod
    def _read_request(conn: socket.socket) -> Received | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return Received(path, headers, body)

    def _play(self, raw: socket.socket, conn: socket.socket, behaviour: Behaviour) -> None:
        reply = behaviour.reply or b""
        if behaviour.cut_at is not None:
            reply = reply[: behaviour.cut_at]
        if behaviour.trickle:
            for i in range(len(reply)):
                if self._stop.is_set():
                    return
                conn.sendall(reply[i : i + 1])
                time.sleep(behaviour.trickle)
        elif reply:
            conn.sendall(reply)
        then = behaviour.then
        if then == "stall":
            self._stop.wait(60)
        elif then == "garbage":
            conn.sendall(b"\x00\xff garbage \x16\x03\x01" * 20)
            time.sleep(0.05)
        elif then == "tls-break":
            raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 7)  # a TLS record header with a bad body
            time.sleep(0.05)
        elif then == "reset":
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if then != "stall":
            try:
                conn.close()
            except OSError:
                pass
            raw.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path
