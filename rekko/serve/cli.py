"""``rekko serve``: the HTTP API under uvicorn (a plugin of :mod:`rekko.cli`).

Artifacts are loaded and verified before the port is opened, so a missing or
stale artifact set exits 2 with the "rerun the pipeline" hint instead of
starting a server that can only fail.
"""

from __future__ import annotations

import argparse
import logging

from rekko.exceptions import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from rekko.cli_args import add_artifact_options

    p = subparsers.add_parser(
        "serve", help="HTTP JSON API and a small web page over the artifacts (needs rekko[serve])",
        description="Serve recommendations over HTTP: /recommendations/{user_id}, /movies/{movie_id}, "
                    "/movies/{movie_id}/similar, /health, API docs at /docs and a web page at /. "
                    "New artifacts written by `rekko pipeline` are picked up without a restart.")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    p.add_argument("--port", type=_port, default=80, help="TCP port (default: 80)")
    p.add_argument("--workers", type=_workers, default=1,
                   help="worker processes; they share one memory-mapped copy of the artifacts (default: 1)")
    p.add_argument("--reload-interval", type=float, default=2.0, metavar="SECONDS",
                   help="how often to look for new artifacts; 0 turns reloading off (default: 2)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    add_artifact_options(p)
    p.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
    from rekko.cli_args import artifact_paths

    _require_server_deps()
    from rekko.serve.shared import serve_shared

    interval = args.reload_interval if args.reload_interval > 0 else None
    # Always through a memory-mapped bundle built in a child process: the serving process never
    # holds the pandas/pyarrow load's peak, and 1 or N workers share the same code path.
    return serve_shared(artifact_paths(args), host=args.host, port=args.port, workers=args.workers,
                        interval=interval, log_level=args.log_level)
