"""The ``photozsom`` command.

Sub-commands (each stage module owns its implementation; this file only parses):

- ``photozsom simulate OUT_DIR --scale ci|default --seed N`` — the embedded default sky.
- ``photozsom flag INPUT -o OUTPUT --model DIR`` — flag a user's catalogue.
- ``photozsom book [--scale ci|default] [--only CHAPTER] [-p name=value]`` — execute the chapters
  and build the HTML book.
"""

from __future__ import annotations

import argparse
import sys

from photozsom import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="photozsom",
        description="Photometric redshifts for DESI Legacy Survey galaxies with SOM coverage flags.",
    )
    p.add_argument("--version", action="version", version=f"photozsom {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("simulate", help="write the simulated Legacy Survey sky (random.parquet, spec.parquet, cutouts.h5)")
    s.add_argument("out_dir", help="directory to write into")
    s.add_argument("--scale", default="ci", help="'ci', 'default', or a number of spectroscopic galaxies")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cutout-size", type=int, default=None, help="cutout side in pixels (default: the scale's)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_run_simulate)

    f = sub.add_parser("flag", help="flag a catalogue's galaxies where training data is thin or the model under-performs")
    f.add_argument("input", help="FITS, Parquet or CSV catalogue with DR10 columns")
    f.add_argument("-o", "--output", required=True, help="output file (format from the extension)")
    f.add_argument("--model", required=True, help="a saved Flagger (the directory written by Flagger.save)")
    f.add_argument("--chunk-size", type=int, default=1_000_000, help="rows per chunk")
    f.add_argument("--overwrite", action="store_true")
    f.set_defaults(func=_run_flag)

    b = sub.add_parser("book", help="execute the book's chapters with papermill and build the HTML")
    b.add_argument("--scale", default="default", help="'ci' (minutes) or 'default' (the published book)")
    b.add_argument("--only", action="append", default=None, help="run only this chapter (repeatable)")
    b.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="papermill parameter for every chapter (repeatable)")
    b.add_argument("--no-html", action="store_true", help="execute chapters but do not build the HTML")
    b.add_argument("--root", default=None, help="project root holding _config.yml and book/ (default: found)")
    b.set_defaults(func=_run_book)
    return p


def _run_simulate(args) -> int:
    from photozsom.datasets.mock import cli_main

    return cli_main(args)


def _run_flag(args) -> int:
    from photozsom.flags import cli_main

    return cli_main(args)


def _run_book(args) -> int:
    from photozsom.book import cli_main

    return cli_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"photozsom {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
