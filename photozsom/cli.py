"""The ``photozsom`` command.

Sub-commands (each stage module owns its implementation; this file only parses):

- ``photozsom simulate OUT_DIR --scale ci|default --seed N`` — the embedded default sky.
- ``photozsom predict INPUT -o OUTPUT --model DIR [--flagger DIR] [--pdf FILE]`` — photo-z of
  a user's catalogue (:mod:`photozsom.predict`).
- ``photozsom flag INPUT -o OUTPUT --model DIR`` — flag a user's catalogue.
- ``photozsom explore RUN_DIR -o som.html`` — the interactive SOM explorer of a run.
- ``photozsom aion-fingerprint [--model ID_OR_DIR] [-o FILE]`` — record AION-1's fingerprint.
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

    pr = sub.add_parser("predict", help="photometric redshifts P(z) of a catalogue with a saved "
                        "PhotoZModel (and flags with --flagger)")
    pr.add_argument("input", help="FITS, Parquet or CSV catalogue with DR10 columns")
    pr.add_argument("-o", "--output", required=True, help="output catalogue (format from the "
                    "extension): the input columns + Z_PHOT_* (+ PIT, CRPS if it has Z; + PZ_*)")
    pr.add_argument("--model", required=True, help="a saved PhotoZModel directory")
    pr.add_argument("--flagger", default=None, help="a saved Flagger directory: adds PZ_* flags")
    pr.add_argument("--pdf", default=None, metavar="FILE.h5", help="also write P(z) as a qp file")
    pr.add_argument("--chunk-size", type=int, default=200_000, help="rows per chunk")
    pr.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    pr.add_argument("--overwrite", action="store_true")
    _add_hats_arguments(pr)
    pr.set_defaults(func=_run_predict)

    f = sub.add_parser("flag", help="flag a catalogue's galaxies where training data is thin or the model under-performs")
    f.add_argument("input", help="FITS, Parquet or CSV catalogue with DR10 columns")
    f.add_argument("-o", "--output", required=True, help="output file (format from the extension)")
    f.add_argument("--model", required=True, help="a saved Flagger (the directory written by Flagger.save)")
    f.add_argument("--chunk-size", type=int, default=1_000_000, help="rows per chunk")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    _add_hats_arguments(f)
    f.set_defaults(func=_run_flag)

    e = sub.add_parser("explore", help="write the interactive SOM explorer (standalone HTML) of "
                       "a run directory")
    e.add_argument("run_dir", help="a run directory written by the book / photozsom.pipeline")
    e.add_argument("-o", "--output", default="som_explorer.html", help="HTML file to write")
    e.add_argument("--map", default="S", help="which footprint's SOM: S (DECam) or N (BASS/MzLS)")
    e.add_argument("--max-thumbs", type=int, default=16, help="cutouts shown per cell")
    e.set_defaults(func=_run_explore)

    a = sub.add_parser("aion-fingerprint", help="record the fingerprint of AION-1 weights and "
                       "codecs (to pin them with AIONEmbedder(expected_fingerprint=...))")
    a.add_argument("--model", default="polymathic-ai/aion-base", help="hub id or local directory")
    a.add_argument("--codecs", default=None, help="directory or hub id of the codecs")
    a.add_argument("--device", default=None)
    a.add_argument("--no-hash", action="store_true", help="skip the SHA-256 of the weight files")
    a.add_argument("-o", "--output", default=None, help="JSON file (default: print)")
    a.set_defaults(func=_run_aion_fingerprint)

    b = sub.add_parser("book", help="execute the book's chapters with papermill and build the HTML")
    b.add_argument("--scale", default="default", help="'ci' (minutes) or 'default' (the published book)")
    b.add_argument("--only", action="append", default=None, help="run only this chapter (repeatable)")
    b.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="papermill parameter for every chapter (repeatable)")
    b.add_argument("--no-html", action="store_true", help="execute chapters but do not build the HTML")
    b.add_argument("--root", default=None, help="project root holding _config.yml and book/ (default: found)")
    b.set_defaults(func=_run_book)
    return p


def _add_hats_arguments(p: argparse.ArgumentParser) -> None:
    """``--hats``, ``--workers``, ``--scheduler``, ``--keep-all`` of ``predict`` and ``flag``."""
    p.add_argument("--hats", action="store_true", help="INPUT and OUTPUT are HATS catalogues "
                   "(LSDB on Dask; photozsom.survey)")
    p.add_argument("--workers", type=int, default=None, help="with --hats: start a local Dask "
                   "cluster of N worker processes")
    p.add_argument("--scheduler", default=None, help="with --hats: address of a running Dask "
                   "scheduler (SLURM, Kubernetes, ...)")
    p.add_argument("--keep-all", action="store_true", help="with --hats: carry every input "
                   "column (default OBJID, RA, DEC)")


def _run_simulate(args) -> int:
    from photozsom.datasets.mock import cli_main

    return cli_main(args)


def _run_predict(args) -> int:
    import time

    if args.hats:
        from photozsom.survey import cli_main

        return cli_main(args)
    from photozsom.flags import load_flagger
    from photozsom.model import PhotoZModel
    from photozsom.predict import predict_file

    model = PhotoZModel.load(args.model, device=args.device)
    flagger = load_flagger(args.flagger, device=args.device) if args.flagger else None
    t0 = time.perf_counter()
    st = predict_file(args.input, args.output, model, flagger, pdf_path=args.pdf,
                      chunk_size=args.chunk_size, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    n = st["rows"]
    flagged = f", {st.get('flagged', 0)} flagged" if flagger is not None else ""
    print(f"photozsom predict: {n} rows -> {args.output}: {st.get('scored', 0)} scored{flagged} "
          f"in {dt:.1f} s ({n / max(dt, 1e-9):,.0f} rows/s)", file=sys.stderr)
    return 0


def _run_flag(args) -> int:
    import time

    if args.hats:
        from photozsom.survey import cli_main

        return cli_main(args)
    from photozsom.flags import load_flagger
    from photozsom.predict import flag_file

    flagger = load_flagger(args.model, device=args.device)
    t0 = time.perf_counter()
    st = flag_file(args.input, args.output, flagger, chunk_size=args.chunk_size,
                   overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    n = st["rows"]
    print(f"photozsom flag: {n} rows -> {args.output}: {st['flagged']} flagged "
          f"({st['flagged'] / n:.1%}; {st['ood']} out of distribution, {st['underperforming']} in "
          f"under-performing cells, {st['unmapped']} without SOM features) in {dt:.1f} s "
          f"({n / max(dt, 1e-9):,.0f} rows/s)", file=sys.stderr)
    return 0


def _run_explore(args) -> int:
    from photozsom.explore import run_explorer, save_explorer

    layout = run_explorer(args.run_dir, region=args.map, max_thumbs=args.max_thumbs, n_jobs=-1,
                          progress=True)
    path = save_explorer(layout, args.output)
    print(f"photozsom explore: {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _run_aion_fingerprint(args) -> int:
    import json

    from photozsom.artifacts import write_json
    from photozsom.embed.aion import aion_fingerprint

    fp = aion_fingerprint(args.model, codecs=args.codecs, device=args.device,
                          hash_files=not args.no_hash)
    if args.output:
        write_json(args.output, fp)
        print(f"photozsom aion-fingerprint: {args.output}", file=sys.stderr)
    else:
        print(json.dumps(fp, indent=1))
    return 0


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
