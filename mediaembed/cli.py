"""The `mediaembed` command: search, serve, ingest, demo, dev and emulate."""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.settings import check_definition_settings, unknown_setting_warnings, use_model_settings
from resources.providers.marengo_models import MARENGO_MODELS
from resources.storage.clock import REAL_CLOCK, Clock


def main(argv: list[str] | None = None, clock: Clock = REAL_CLOCK) -> int:
    # First of all: `ingest --timeout` counts from here, loading Dagster and the code location included.
    started_at = clock.monotonic()
    for line in unknown_setting_warnings(os.environ):
        print(f"mediaembed: warning: {line}", file=sys.stderr)
    try:
        use_model_settings(os.environ)  # Marengo 3.5's vector length, before any model is looked up
        check_definition_settings(os.environ)  # read as the code location loads: a bad one is refused here
    except ValueError as error:
        print(f"mediaembed: {error}", file=sys.stderr)
        return 2
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("emulate", "demo", "dev"):
        try:
            import moto.server  # noqa: F401
        except ImportError:
            print(
                f"mediaembed {args.command} needs the local emulators: pip install 'mediaembed[local]'",
                file=sys.stderr,
            )
            return 2
    if args.command == "emulate":
        from emulators.__main__ import serve

        return serve(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "search":
        return _search(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "serving":
        return _serving(args, parser)
    if args.command == "ingest":
        from mediaembed.ingest import run_ingest

        return run_ingest(
            args.uri, args.model, args.timeout, args.replace, started_at=started_at, clock=clock
        )
    if args.command == "demo":
        from harness.local_env import bind_local_settings

        shell = dict(os.environ)  # what a `search --local` typed after the demo runs with
        bind_local_settings()  # before the code location loads: the demo's TwelveLabs is the emulator
        from harness.demo import run_demo

        return run_demo(args.workdir, searcher_env=shell)
    from harness.dev import run_dev

    s3_port, bedrock_port, twelvelabs_port = args.emulator_ports
    return run_dev(args.workdir, args.port, (s3_port, bedrock_port, twelvelabs_port))


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per thing a person does."""
    parser = argparse.ArgumentParser(prog="mediaembed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_search, _add_serve, _add_ingest, _add_serving, _add_local_stack):
        add(commands)
    return parser


def _add_search(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`mediaembed search`: text, image or audio queries."""
    search_cmd = commands.add_parser(
        "search",
        help="search the segment index by text, images or a short audio clip",
        description="Search the segment index by text, images (--image, several for a multi-input query) "
        "or a short audio clip (--audio); text with one image searches by both. Exit status: 0 hits "
        "printed (maybe none), 1 settings, index or provider not ready, 2 bad command line or query.",
    )
    search_cmd.add_argument("text", nargs="?", help="the words to search for (may be left out with --image)")
    search_cmd.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH|s3://…",
        help="an image to search by: a local file (sent inline) or an S3 object; repeat for several",
    )
    search_cmd.add_argument("--audio", metavar="PATH|s3://…", help="an audio clip under 10 minutes")
    search_cmd.add_argument(
        "--text-truncate",
        choices=("start", "end", "none"),
        help="Marengo 2.7 only: drop the start or the end of a text over 77 tokens, or refuse it (none)",
    )
    search_cmd.add_argument(
        "--mode",
        choices=("vector", "text", "hybrid"),
        default="vector",
        help="vector: by meaning, each segment once whatever options matched it; text: words in Pegasus "
        "descriptions and chapters; hybrid: both, fused by reciprocal rank",
    )
    search_cmd.add_argument("--top-k", type=int, default=5, help="how many hits (1 or more)")
    search_cmd.add_argument("--json", action="store_true", help="one JSON object per hit")
    search_cmd.add_argument(
        "--model",
        choices=sorted(MARENGO_MODELS),
        help="search this version's index (default: the version serving search, see `mediaembed serving`)",
    )
    search_cmd.add_argument(
        "--local",
        action="store_true",
        help="search what `make demo` built: the index under --workdir, through a local searcher that "
        "keeps the emulators for the query embedding warm (started on first use, it stops after 15 idle "
        "minutes)",
    )
    search_cmd.add_argument("--workdir", type=Path, default=Path(".local"), help="with --local")
    search_cmd.add_argument(
        "--stop", action="store_true", help="with --local: stop the local searcher of --workdir"
    )


def _add_serve(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`mediaembed serve`: the search page and the JSON API."""
    serve_cmd = commands.add_parser(
        "serve",
        help="the search page and JSON API over the same index as `mediaembed search`",
        description="Serve a search page (text, image or audio queries; an inline player per hit, at its "
        "span) and a JSON API (/api/search, described at /api/openapi.json).",
    )
    serve_cmd.add_argument(
        "--host",
        default="127.0.0.1",
        help="an address other than loopback needs MEDIAEMBED_API_TOKEN (a bearer token)",
    )
    serve_cmd.add_argument("--port", type=int, default=8080)
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes serving the port, each with its own searcher (default: one per core this process "
        "may run on, which uses them all)",
    )
    serve_cmd.add_argument(
        "--local",
        action="store_true",
        help="serve what `make demo` built: its index under --workdir, with the S3 and Bedrock emulators "
        "started for the media links and query embeddings",
    )
    serve_cmd.add_argument("--workdir", type=Path, default=Path(".local"), help="with --local")


def _add_ingest(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`mediaembed ingest`: embed a prefix and follow it to the end."""
    ingest_cmd = commands.add_parser(
        "ingest", help="embed and index everything under s3://bucket/prefix, following it to the end"
    )
    ingest_cmd.add_argument("uri", metavar="s3://bucket/prefix")
    ingest_cmd.add_argument(
        "--model", choices=sorted(MARENGO_MODELS), help="default: the version serving search"
    )
    ingest_cmd.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="stop waiting for Bedrock this many seconds after the command started",
    )
    ingest_cmd.add_argument(
        "--replace", action="store_true", help="make this prefix the lake's media, dropping any other"
    )


def _add_serving(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`mediaembed serving`: show, cut over, roll back, retire."""
    serving_cmd = commands.add_parser(
        "serving",
        help="which Marengo version serves search; cut over to another or roll back",
        description="Without an action: the serving version, since when, and what a rollback returns to. "
        "cut-over KEY and roll-back run the same Dagster jobs as the UI (cut-over only after the target's "
        "whole-version checks pass), on the instance of DAGSTER_HOME. retire KEY stops embedding new media "
        "for a version that no longer serves (its tables stay; search can no longer roll back to it).",
    )
    serving_cmd.add_argument(
        "action", nargs="?", default="show", choices=("show", "cut-over", "roll-back", "retire")
    )
    serving_cmd.add_argument(
        "key", nargs="?", choices=sorted(MARENGO_MODELS), help="with cut-over: the version"
    )
    serving_cmd.add_argument("--json", action="store_true", help="the record and its history as JSON")
    serving_cmd.add_argument("--by", default="", help="who makes the change (default: your user name)")
    serving_cmd.add_argument(
        "--local", action="store_true", help="show what `make demo` built (the lake under --workdir)"
    )
    serving_cmd.add_argument("--workdir", type=Path, default=Path(".local"), help="with --local")


def _add_local_stack(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`mediaembed demo`, `dev` and `emulate`: the local emulators (dev only)."""
    demo_cmd = commands.add_parser("demo", help="run the pipeline on the local emulators, then search")
    demo_cmd.add_argument("--workdir", type=Path, default=Path(".local"))

    dev_cmd = commands.add_parser("dev", help="local emulators + sample media + the Dagster UI")
    dev_cmd.add_argument("--workdir", type=Path, default=Path(".local"))
    dev_cmd.add_argument("--port", type=int, default=3000)
    dev_cmd.add_argument(
        "--emulator-ports",
        type=int,
        nargs=3,
        default=[4566, 4567, 4568],
        metavar=("S3", "BEDROCK", "TWELVELABS"),
        help="ports of the local emulators (0: any free port)",
    )

    commands.add_parser("emulate", help="run the local S3 and Bedrock emulators", add_help=False)


def _debug() -> bool:
    """MEDIAEMBED_DEBUG: the search page and commands show errors in full."""
    return bool(os.environ.get("MEDIAEMBED_DEBUG"))


def _serving(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from mediaembed.serving import run_serving

    env = dict(os.environ)
    if (args.action in ("cut-over", "retire")) != (args.key is not None):
        parser.error(
            "name the version with cut-over or retire, and only then: mediaembed serving cut-over marengo-3.0"
        )
    if args.local:
        if args.action != "show":
            parser.error("--local only shows; change the local serving version from `make dev`'s UI")
        from harness.local_env import local_settings

        env["MEDIAEMBED_LAKE_URI"] = local_settings(args.workdir)["MEDIAEMBED_LAKE_URI"]
    return run_serving(args.action, args.key, args.json, args.by, env=env, debug=_debug())


def _search(args: argparse.Namespace) -> int:
    if args.stop and not args.local:
        print(
            "mediaembed search: --stop goes with --local: mediaembed search --local --stop", file=sys.stderr
        )
        return 2
    if args.local:
        return _search_locally(args)
    from mediaembed.search import run_search  # no Dagster, no code location: a fast start

    return run_search(
        args.text,
        args.top_k,
        args.model,
        as_json=args.json,
        images=args.image,
        audio=args.audio,
        text_truncate=args.text_truncate,
        mode=args.mode,
        env=os.environ,
        debug=_debug(),
    )


def _search_locally(args: argparse.Namespace) -> int:
    """`search --local` through the work folder's warm local searcher (harness/local_searcher.py), which
    runs the same `run_search` in its own process: this one loads neither LanceDB nor the emulators."""
    try:
        from harness.local_searcher import IDLE_SEC, LocalSearcherError, search_locally, stop_local_searcher
    except ImportError:
        print(
            "mediaembed search --local needs the local emulators: pip install 'mediaembed[local]'",
            file=sys.stderr,
        )
        return 2
    if args.stop:
        pid = stop_local_searcher(args.workdir)
        print(
            f"stopped the local searcher of {args.workdir} (pid {pid})"
            if pid
            else f"no local searcher runs for {args.workdir}"
        )
        return 0
    query = {
        "text": args.text,
        "top_k": args.top_k,
        "model": args.model,
        "json": args.json,
        "images": args.image,
        "audio": args.audio,
        "text_truncate": args.text_truncate,
        "mode": args.mode,
        "debug": _debug(),
    }
    try:
        code, out, err, started = search_locally(args.workdir, query, os.environ)
    except LocalSearcherError as error:
        print(f"mediaembed search: {error}", file=sys.stderr)
        return 1
    if started:
        print(
            f"mediaembed search: started a local searcher for {args.workdir} (pid {started}); it stops after "
            f"{IDLE_SEC // 60} idle minutes, or with `mediaembed search --local --stop`",
            file=sys.stderr,
        )
    sys.stderr.write(err)
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head -1` stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def serve_worker() -> Any:
    """The ASGI app of one `mediaembed serve --workers N` process (uvicorn imports it in each worker), with
    the settings of the environment the worker inherited from the command."""
    from mediaembed.web.server import worker_app

    return worker_app(os.environ, debug=_debug())


def _serve(args: argparse.Namespace) -> int:
    from mediaembed.search import SearchError
    from mediaembed.web.server import default_workers, run_serve  # like search: no Dagster, no location

    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        print(f"mediaembed serve: --workers {workers}: pass 1 or more processes", file=sys.stderr)
        return 2
    if not args.local:
        return run_serve(args.host, args.port, env=os.environ, debug=_debug(), workers=workers)
    try:
        from harness.local_search import local_search_env  # the local harness, only when asked for
    except ImportError:
        print(
            "mediaembed serve --local needs the local emulators: pip install 'mediaembed[local]'",
            file=sys.stderr,
        )
        return 2
    try:
        with local_search_env(args.workdir, with_media=True):
            return run_serve(args.host, args.port, env=os.environ, debug=_debug(), workers=workers)
    except SearchError as error:
        print(f"mediaembed serve: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
