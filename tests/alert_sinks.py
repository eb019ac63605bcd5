"""Where alerts go in tests: a real HTTP server taking webhook POSTs and a real SMTP server
(aiosmtpd), both on loopback, recording what they receive.

``webhook_sink`` yields an object with ``url`` and ``requests`` (the decoded JSON bodies);
``smtp_sink`` yields one with ``port`` and ``messages`` (``email.message.Message`` objects)
and ``conn_uri`` (an Airflow connection URI for it).

Enable with ``pytest_plugins = ["tests.alert_sinks"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import email
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class WebhookSink:
    url: str
    requests: list[dict] = field(default_factory=list)


@dataclass
class SmtpSink:
    port: int
    messages: list = field(default_factory=list)

    @property
    def conn_uri(self) -> str:
        # no TLS on loopback; the sender comes from the connection (alerts.email_from may be unset)
        return f"smtp://127.0.0.1:{self.port}?disable_tls=true&disable_ssl=true&from_email=pipeline%40example.com"


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    with serve_webhook() as sink:
        yield sink


@contextlib.contextmanager
def serve_webhook() -> Iterator[WebhookSink]:
    """A webhook sink for the block (for fixtures of a wider scope than ``webhook_sink``)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookSink(f"http://127.0.0.1:{server.server_port}/hooks/alerts", received)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink(port)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
            sink.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
