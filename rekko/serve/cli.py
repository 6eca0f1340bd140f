"""``rekko serve``: the HTTP API under uvicorn (a plugin of :mod:`rekko.cli`).

Artifacts are loaded and verified before the port is opened, so a missing or
stale artifact set exits 2 with the "rerun the pipeline" hint instead of
starting a server that can only fail.

Private by default: it listens on 127.0.0.1 unless ``--host`` says otherwise
(the Docker entrypoint passes 0.0.0.0), asks for a bearer token when
``REKKO_SERVE_TOKEN`` is set, and answers only the Host names of
``--allowed-hosts``; on a loopback address without that option, only the
loopback names (``localhost``, the address itself), so a web page cannot
rebind its own name to 127.0.0.1 and read the API from the user's browser. Connections and timeouts are bounded per worker (see
:class:`rekko.serve.app.ConnectionLimits` for where each default comes from).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import re

from rekko.exceptions import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from rekko.cli_args import add_artifact_options

    p = subparsers.add_parser(
        "serve", help="HTTP JSON API and a small web page over the artifacts (needs rekko[serve])",
        description="Serve recommendations over HTTP: /recommendations/{user_id}, /movies/{movie_id}, "
                    "/movies/{movie_id}/similar, /health, API docs at /docs and a web page at /. "
                    "New artifacts written by `rekko pipeline` are picked up without a restart.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every "
                        "interface, which the Docker image uses)")
    p.add_argument("--port", type=_port, default=80, help="TCP port (default: 80)")
    p.add_argument("--workers", type=_workers, default=1,
                   help="worker processes; they share one memory-mapped copy of the artifacts (default: 1)")
    p.add_argument("--reload-interval", type=float, default=2.0, metavar="SECONDS",
                   help="how often to look for new artifacts; 0 turns reloading off (default: 2)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    security = p.add_argument_group(
        "access", "Set REKKO_SERVE_TOKEN in the environment to require 'Authorization: Bearer <token>' on every "
                  "endpoint but /health (the page at / asks for it).")
    security.add_argument("--allowed-hosts", type=_allowed_hosts, default=(), metavar="HOSTS",
                          help="answer only requests whose Host header is one of these comma-separated names "
                               "(no port; *.example.com for subdomains; * for any); others get 400 (default: "
                               "the loopback names on a loopback --host, against DNS rebinding; else any)")
    limits = p.add_argument_group("limits", "Per worker process; slow or idle clients cannot hold more.")
    defaults = _limit_defaults()
    limits.add_argument("--limit-concurrency", type=_positive_int, default=defaults["max_connections"], metavar="N",
                        help="open connections; past it a new one replaces the longest-waiting connection "
                             "without a complete request, or gets 503 (default: %(default)s, capped by ulimit -n)")
    limits.add_argument("--timeout-header", type=_positive_float, default=defaults["header_timeout"],
                        metavar="SECONDS", help="time a client has to send a whole request head; then 408 "
                                                "(default: %(default)s)")
    limits.add_argument("--timeout-keep-alive", type=_positive_int, default=defaults["keep_alive"],
                        metavar="SECONDS", help="idle time before a kept-alive connection is closed "
                                                "(default: %(default)s)")
    limits.add_argument("--timeout-graceful-shutdown", type=_non_negative_int, default=defaults["graceful_shutdown"],
                        metavar="SECONDS", help="on SIGTERM, time requests in flight get to finish "
                                                "(default: %(default)s)")
    add_artifact_options(p)
    p.set_defaults(handler=run)


def _limit_defaults() -> dict[str, float]:
    """The defaults of :class:`~rekko.serve.app.ConnectionLimits`, without importing FastAPI for ``--help``.

    Kept equal to the dataclass by tests/test_serve_limits.py.
    """
    return {"max_connections": 1000, "header_timeout": 10.0, "keep_alive": 5, "graceful_shutdown": 5}


def _number(kind: type, text: str, what: str, minimum: float, strict: bool) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return int(_number(int, text, "an integer >= 1", 1, strict=False))


def _non_negative_int(text: str) -> int:
    return int(_number(int, text, "an integer >= 0", 0, strict=False))


def _positive_float(text: str) -> float:
    return _number(float, text, "a number of seconds > 0", 0, strict=True)


def _allowed_hosts(text: str) -> tuple[str, ...]:
    """``--allowed-hosts a,b``: host names or IP addresses without port; ``*.example.com`` matches subdomains.

    Checked here, not by Starlette's asserts, so a bad pattern exits 2 with a
    sentence instead of failing inside a worker. Lower-cased, as Starlette
    compares; a bare IPv6 address gets the brackets a Host header has.
    """
    hosts = []
    for raw in text.split(","):
        host = raw.strip().lower()
        if not host:
            continue
        if ":" in host and not host.startswith("["):
            try:
                host = f"[{ipaddress.IPv6Address(host)}]"
            except ValueError:
                raise argparse.ArgumentTypeError(f"give host names without a port: {raw.strip()!r}") from None
        if not re.fullmatch(r"\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\]", host):
            raise argparse.ArgumentTypeError(
                f"not a host name, IP address or *.domain pattern (no scheme, port or path): {raw.strip()!r}")
        hosts.append(host)
    if not hosts:
        raise argparse.ArgumentTypeError("expected one or more host names separated by commas")
    return tuple(hosts)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535, got {value}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workers must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"workers must be an integer >= 1, got {value}")
    return value


def _require_server_deps() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"rekko serve needs the serve extra ({exc.name} is not installed): "
                          "pip install 'rekko[serve]'") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: Host names a loopback server answers by default (DNS rebinding: a page whose name now points at
#: 127.0.0.1 still sends its own name in Host).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def default_allowed_hosts(host: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``allowed`` if given (``*`` = any); else the loopback names on a loopback ``host``, else any."""
    if allowed:
        return () if "*" in allowed else allowed
    if not _is_loopback(host):
        return ()
    own = host.lower() if ":" not in host else f"[{host.strip('[]').lower()}]"
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, own)))


def run(args: argparse.Namespace) -> int:
    from rekko.cli_args import artifact_paths

    _require_server_deps()
    from rekko.serve.app import AccessPolicy, ConnectionLimits, read_token
    from rekko.serve.shared import serve_shared

    access = AccessPolicy(token=read_token(), allowed_hosts=default_allowed_hosts(args.host, args.allowed_hosts))
    if not access.token and not _is_loopback(args.host):
        log.warning("listening on %s without REKKO_SERVE_TOKEN: anyone who can reach port %d can read every "
                    "user's watch history through /recommendations", args.host, args.port)
    limits = ConnectionLimits(max_connections=args.limit_concurrency, header_timeout=args.timeout_header,
                              keep_alive=args.timeout_keep_alive, graceful_shutdown=args.timeout_graceful_shutdown)
    interval = args.reload_interval if args.reload_interval > 0 else None
    # Always through a memory-mapped bundle built in a child process: the serving process never
    # holds the pandas/pyarrow load's peak, and 1 or N workers share the same code path.
    return serve_shared(artifact_paths(args), host=args.host, port=args.port, workers=args.workers,
                        interval=interval, log_level=args.log_level, limits=limits, access=access)
