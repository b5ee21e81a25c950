"""--e2e-edges: the settings the edge services (tracking, notification, returns) need beyond the saga's,
and the local SMTP server notification sends its emails to (an aiosmtpd sink that discards them)."""

import secrets
import socket
import time

from bench.env import Server, free_port, say

MAIL_SINK = "mail_sink"  # its name among the measured processes: not an OMS service


def edge_env(name: str, smtp_port: int | None, link_secret: str, carrier_secret: str) -> dict[str, str]:
    """The extra environment of one service of a run (none for the saga's four)."""
    if name == "tracking":
        return {"CARRIER_WEBHOOK_SECRET": carrier_secret, "TRACKING_LINK_SECRET": link_secret}
    if name == "notification":
        assert smtp_port is not None, "notification needs the mail sink"
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "TRACKING_LINK_SECRET": link_secret}
    return {}


def run_secrets() -> tuple[str, str]:
    """(tracking link secret, carrier webhook secret): fresh ones per run."""
    return f"bench-link-{secrets.token_urlsafe(12)}", f"bench-carrier-{secrets.token_urlsafe(12)}"


def mail_sink() -> Server:
    """An aiosmtpd server (not started) that accepts every email and keeps none (the Sink handler)."""
    port = free_port()
    argv = ["-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"]
    return Server(MAIL_SINK.replace("_", "-"), argv, {}, port)


def wait_listening(server: Server, timeout: float = 30) -> None:
    """Waits for a started server that speaks no HTTP to accept TCP connections on its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}); last lines of its log:\n"
                               f"{server.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                say(f"{server.name} ready on 127.0.0.1:{server.port}")
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{server.name} not listening after {timeout:.0f}s; last lines of its log:\n{server.tail()}")
