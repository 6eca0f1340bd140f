"""``python -m rekko.enrich``: the ``enrich`` subcommand on its own (same options as ``rekko enrich``)."""

from __future__ import annotations

import argparse
import logging
import sys

from rekko.enrich.cli import HELP, add_arguments, run
from rekko.exceptions import RekkoError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rekko.enrich", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except RekkoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; answers received so far are saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
