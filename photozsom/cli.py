"""The ``photozsom`` command.

Sub-commands (each stage module owns its implementation; this file only parses):

- ``photozsom simulate OUT_DIR --scale ci|default --seed N`` — the embedded default sky.
- ``photozsom predict INPUT -o OUTPUT --model DIR [--flagger DIR] [--pdf FILE.h5]`` — photo-z
  of a user's catalogue (:mod:`photozsom.predict`); ``DIR/flagger`` is used when present.
- ``photozsom flag INPUT -o OUTPUT --flagger DIR`` — flag a user's catalogue.
- ``photozsom train SPEC -o DIR [--random FILE] [--split-by COL]`` — a model and its flag from a
  spectroscopic table (:mod:`photozsom.train`), used whole by ``predict --model DIR``.

User mistakes (paths, formats, columns, corrupt model files) end with one line on stderr and
exit code 2, checked before any model is loaded; SIGINT, SIGTERM and SIGHUP remove the partial
outputs and end with one line and exit code 128 + the signal number.
- ``photozsom explore RUN_DIR -o som.html`` — the interactive SOM explorer of a run.
- ``photozsom aion-fingerprint [--model ID_OR_DIR] [-o FILE]`` — record AION-1's fingerprint.
- ``photozsom book [--scale ci|default] [--only CHAPTER] [-p name=value]`` — execute the chapters
  and build the HTML book.
"""

from __future__ import annotations

import argparse
import signal
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
    s.add_argument("--seed", type=int, default=0, help="random seed of the simulated sky: the "
                   "same seed gives the same files (default 0)")
    s.add_argument("--cutout-size", type=int, default=None, help="cutout side in pixels (default: the scale's)")
    s.add_argument("--overwrite", action="store_true", help="replace files already in OUT_DIR")
    s.set_defaults(func=_run_simulate)

    pr = sub.add_parser(
        "predict", help="photometric redshifts P(z) of a catalogue with a saved PhotoZModel "
        "(and flags with a flagger)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Photo-z of every row of a catalogue, in input order, streamed in chunks.",
        epilog="columns the model needs:\n"
        "  catalogue features: FLUX_<b> (nanomaggies) and MW_TRANSMISSION_<b> (1 for dereddened\n"
        "  fluxes) of every band the model uses; FLUX_IVAR_<b> optional (<= 0: unmeasured,\n"
        "  imputed). Shape features: SHAPE_R, SHAPE_E1, SHAPE_E2, SERSIC. Embedding models:\n"
        "  their EMB_* columns. Optional: Z (adds PIT, CRPS), OBJID (carried into --pdf).\n"
        "  `photozsom predict --model DIR --columns` prints the exact list for a model.\n\n"
        "output columns: Z_PHOT_MEAN, Z_PHOT_MEDIAN, Z_PHOT_MODE, Z_PHOT_STD, Z_PHOT_L68/U68,\n"
        "  Z_PHOT_L95/U95 (central intervals), PZ_STATUS, PZ_REASON (+ PIT, CRPS; + PZ_* flags).")
    pr.add_argument("input", nargs="?", help="catalogue file with DR10 columns: .parquet, "
                    ".fits or .csv")
    pr.add_argument("-o", "--output", help="output catalogue: .parquet, .fits or .csv (the "
                    "format follows the name); the input columns + Z_PHOT_* (+ PIT, CRPS if it "
                    "has Z; + PZ_* flags)")
    pr.add_argument("--model", required=True, help="a saved PhotoZModel directory (written by "
                    "PhotoZModel.save or photozsom train)")
    pr.add_argument("--flagger", default=None, help="a saved flagger directory: adds the PZ_* "
                    "flag columns (default: MODEL/flagger when it exists)")
    pr.add_argument("--no-flagger", action="store_true", help="do not use MODEL/flagger")
    pr.add_argument("--pdf", default=None, metavar="FILE.h5", help="also stream P(z) into this "
                    "HDF5 file (.h5 or .hdf5): a qp mixmod ensemble of each galaxy's largest "
                    "components; read it with qp.read(FILE, fmt='hdf5') or photozsom.io.read_pdf")
    pr.add_argument("--pdf-components", type=int, default=64, metavar="K", help="components "
                    "kept per galaxy in --pdf (default 64, at most 12 bytes each; the weight "
                    "left out is stored per galaxy as PZ_PDF_DROPPED)")
    pr.add_argument("--columns", action="store_true", help="print the columns --model needs "
                    "and exit")
    pr.add_argument("--chunk-size", type=int, default=50_000, help="rows per chunk (memory "
                    "grows by about 8 kB per row of a chunk; default 50000)")
    pr.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    pr.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and the --pdf "
                    "file) if they exist; without it an existing file is an error")
    pr.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                    help="seconds between progress lines when stderr is not a terminal")
    _add_hats_arguments(pr)
    pr.set_defaults(func=_run_predict)

    f = sub.add_parser("flag", help="flag a catalogue's galaxies where training data is thin or the model under-performs")
    f.add_argument("input", help="catalogue file with DR10 columns: .parquet, .fits or .csv")
    f.add_argument("-o", "--output", required=True, help="output catalogue: .parquet, .fits or "
                   ".csv (the format follows the name)")
    f.add_argument("--flagger", default=None, help="a saved flagger directory (written by "
                   "Flagger.save; photozsom train writes it as MODEL_DIR/flagger)")
    f.add_argument("--model", dest="flagger_alias", default=None, help=argparse.SUPPRESS)
    f.add_argument("--chunk-size", type=int, default=1_000_000, help="rows per chunk")
    f.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists; "
                   "without it an existing file is an error")
    f.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    f.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between progress lines when stderr is not a terminal")
    _add_hats_arguments(f)
    f.set_defaults(func=_run_flag)

    e = sub.add_parser("explore", help="write the interactive SOM explorer (standalone HTML) of "
                       "a run directory")
    e.add_argument("run_dir", help="a run directory written by the book / photozsom.workflow.pipeline")
    e.add_argument("-o", "--output", default="som_explorer.html", help="HTML file to write")
    e.add_argument("--map", default="S", help="which footprint's SOM: S (DECam) or N (BASS/MzLS)")
    e.add_argument("--max-thumbs", type=int, default=16, help="cutouts shown per cell")
    e.set_defaults(func=_run_explore)

    a = sub.add_parser("aion-fingerprint", help="record the fingerprint of AION-1 weights and "
                       "codecs (to pin them with AIONEmbedder(expected_fingerprint=...))")
    a.add_argument("--model", default="polymathic-ai/aion-base", help="hub id or local directory")
    a.add_argument("--codecs", default=None, help="directory or hub id of the codecs")
    a.add_argument("--device", default=None, help="torch device (default: cuda if present)")
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
    _add_train_parser(sub)
    return p


def _add_train_parser(sub) -> None:
    """``photozsom train`` (:mod:`photozsom.train`)."""
    p = sub.add_parser(
        "train", help="train a photo-z model and its flag from a spectroscopic table",
        description="Split a spectroscopic table, train a PhotoZModel, predict out of fold, fit "
        "the SOM flag and score the held-out test split; DIR is then used whole by "
        "`photozsom predict IN -o OUT --model DIR`.")
    p.add_argument("spec", help="spectroscopic table (.parquet, .fits, .csv): DR10-style "
                   "FLUX_<b> columns in nanomaggies (optional FLUX_IVAR_<b>, MW_TRANSMISSION_<b>, "
                   "SHAPE_*, PHOTSYS) and Z")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write")
    p.add_argument("--random", default=None, metavar="FILE", help="a random sample of the "
                   "catalogue you will flag (same columns, no Z); without it the maps are "
                   "trained on the spectroscopic galaxies, with a warning")
    p.add_argument("--split-by", default=None, metavar="COL", help="keep the values of COL "
                   "together (e.g. ROSETTE); a column of train/val/test is used as the split "
                   "(default: SPLIT when present, else a seeded 80/10/10 hash of OBJID)")
    p.add_argument("--features", default="auto", help="'auto' (the bands the table has) or "
                   "comma-separated names such as r,g-r,r-z,z-W1,W1-W2")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, networks, maps and "
                   "bootstrap (default 0): the same seed gives the same files")
    p.add_argument("--cv-folds", type=int, default=3, help="out-of-fold networks (default 3)")
    p.add_argument("--max-epochs", type=int, default=None, help="MDN epochs (default: its own "
                   "schedule)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per cell "
                   "(default 1000)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from photozsom.train import run_cli

    return run_cli(args)


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
    from photozsom.sim.sky import cli_main

    return cli_main(args)


def _say(command: str):
    return lambda msg: print(f"photozsom {command}: {msg}", file=sys.stderr, flush=True)


def _run_predict(args) -> int:
    import os
    import time

    from photozsom.predict import check_job, model_columns

    if args.columns:
        print(" ".join(model_columns(args.model)))
        return 0
    if args.input is None or args.output is None:
        raise ValueError("give INPUT and -o OUTPUT (or --columns to list the columns --model "
                         "needs)")
    if args.hats:
        from photozsom.survey import cli_main

        return cli_main(args)
    flagger_dir = args.flagger
    if flagger_dir is None and not args.no_flagger and os.path.isdir(os.path.join(args.model,
                                                                                  "flagger")):
        flagger_dir = os.path.join(args.model, "flagger")
    # every path, format and column checked before the model is loaded
    check_job(args.input, args.output, pdf_path=args.pdf, overwrite=args.overwrite,
              model_dir=args.model, report=_say("predict"))
    from photozsom.predict import load_flagger_dir, load_model, predict_file

    model = load_model(args.model, device=args.device)
    flagger = load_flagger_dir(flagger_dir, device=args.device) if flagger_dir else None
    t0, c0 = time.perf_counter(), time.process_time()
    st = predict_file(args.input, args.output, model, flagger, pdf_path=args.pdf,
                      chunk_size=args.chunk_size, overwrite=args.overwrite,
                      pdf_components=args.pdf_components, progress_every=args.progress_every)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = st["rows"]
    flagged = f", {st.get('flagged', 0)} flagged ({flagger_dir})" if flagger is not None else ""
    pdf = (f"; P(z) -> {args.pdf} (largest weight left out {st['pdf_max_dropped']:.1e})"
           if args.pdf else "")
    print(f"photozsom predict: {n} rows -> {args.output}: {st.get('scored', 0)} scored{flagged}"
          f"{pdf} in {dt:.1f} s ({n / max(dt, 1e-9):,.0f} rows/s; "
          f"{n / max(cpu, 1e-9):,.0f} rows per CPU-second)", file=sys.stderr)
    return 0


def _run_flag(args) -> int:
    import time

    if args.flagger_alias is not None:
        if args.flagger is not None:
            raise ValueError("give --flagger only (--model is its old name)")
        _say("flag")("--model is deprecated here: use --flagger DIR")
        args.flagger = args.flagger_alias
    if args.flagger is None:
        raise ValueError("give --flagger DIR, the saved flagger directory")
    if args.hats:
        from photozsom.survey import cli_main

        args.model = args.flagger
        return cli_main(args)
    from photozsom.predict import check_job, flag_file, load_flagger_dir

    check_job(args.input, args.output, overwrite=args.overwrite, report=_say("flag"))
    flagger = load_flagger_dir(args.flagger, device=args.device)
    t0 = time.perf_counter()
    st = flag_file(args.input, args.output, flagger, chunk_size=args.chunk_size,
                   overwrite=args.overwrite, progress_every=args.progress_every)
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

    try:
        from photozsom.embed.aion import aion_fingerprint

        fp = aion_fingerprint(args.model, codecs=args.codecs, device=args.device,
                              hash_files=not args.no_hash)
    except ImportError as err:
        raise ValueError(f"aion-fingerprint needs the aion extra ({err.name or err}): "
                         f"pip install 'photozsom[aion]'") from None
    if args.output:
        write_json(args.output, fp)
        print(f"photozsom aion-fingerprint: {args.output}", file=sys.stderr)
    else:
        print(json.dumps(fp, indent=1))
    return 0


def _run_book(args) -> int:
    from photozsom.workflow.book import cli_main

    return cli_main(args)


class Interrupted(Exception):
    """A termination signal (SIGTERM, SIGHUP) turned into an exception, so that the writers'
    cleanup runs (SIGINT gives KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    """SIGTERM and SIGHUP raise :class:`Interrupted` (main thread only); returns the old ones."""
    import threading

    old = {}
    if threading.current_thread() is not threading.main_thread():
        return old
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, _raise_interrupted)
    return old


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    # predict and flag stream into temporary files: termination signals unwind through their
    # cleanup; the other commands keep the default behaviour
    streaming = args.command in ("predict", "flag")
    old = _install_signal_handlers() if streaming else {}
    done = "; partial outputs removed" if streaming else ""
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as err:
        # user mistakes: one line, no traceback (OSError: missing files, permissions, disk full)
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"photozsom {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"photozsom {args.command}: interrupted (SIGINT){done}", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as err:
        print(f"photozsom {args.command}: interrupted ({err}){done}", file=sys.stderr)
        return 128 + err.signum
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
