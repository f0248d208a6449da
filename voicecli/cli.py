"""The ``voicecli`` command: options, configuration, then one lazily imported module per
subcommand (so a missing piece, such as PortAudio, never breaks the others). The engine
for the UI and for ``ask`` is built in one place, :mod:`voicecli.compose`.

* ``voicecli`` — the terminal UI (``voicecli.ui.app.VoiceApp``)
* ``voicecli ask INPUT.wav`` — one question, one answer, headless (``voicecli.ask``)
* ``voicecli serve`` — the local Realtime server (``voicecli.server``)
* ``voicecli devices`` — audio devices (``voicecli.audio.devices``)
* ``voicecli history`` / ``voicecli export SESSION`` — stored sessions

Options given before the subcommand work after it too. Exit status: 0 success, 1
failure, 2 usage or configuration error, 3 ``ask --mic`` heard no speech, 130
interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from voicecli import __version__
from voicecli.config import TURN_MODES, Config, ConfigError, load_config
from voicecli.secrets import RedactingFilter, config_file_warning

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)


def _add_global_options(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """Options accepted both before and after the subcommand. In subparsers they default
    to SUPPRESS so they never overwrite a value given before the subcommand."""
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--config", metavar="FILE", type=Path, help="read this config file too", **kw)
    p.add_argument(
        "--debug", action="store_true", help="log details (secrets redacted) to stderr", **kw
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="talk to a built-in local server (no API key, no network)",
        **kw,
    )
    p.add_argument("--url", metavar="URL", help="Realtime endpoint (ws://, wss://, https://)", **kw)
    p.add_argument("--model", metavar="NAME", help="model, or Azure deployment name", **kw)
    p.add_argument("--voice", metavar="VOICE", help="assistant voice (e.g. marin, cedar)", **kw)
    p.add_argument("--turn-mode", choices=TURN_MODES, help="who decides a turn ended", **kw)
    p.add_argument("--input-device", metavar="DEV", help="microphone: index or name part", **kw)
    p.add_argument("--output-device", metavar="DEV", help="speaker: index or name part", **kw)
    p.add_argument(
        "--headphones",
        action="store_const",
        const=True,
        help="headphones in use: no echo handling needed",
        **kw,
    )
    p.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        help="allow unencrypted ws:// to another machine",
        **kw,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicecli",
        description="Talk to the OpenAI Realtime API from the terminal. "
        "Without a command: the interactive voice UI.",
    )
    parser.add_argument("--version", action="version", version=f"voicecli {__version__}")
    _add_global_options(parser, sub=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = subs.add_parser(
        "ask",
        help="one spoken question from a WAV file (or the mic), one answer",
        description="Send INPUT.wav (any rate, mono or stereo) as one turn and print the "
        "transcript; exit 0 when the response completed.",
    )
    ask.add_argument("input", nargs="?", metavar="INPUT.wav", help="the question, as a WAV file")
    ask.add_argument(
        "--out", metavar="OUT.wav", help="write the spoken answer here (only when there is one)"
    )
    ask.add_argument(
        "--transcript", metavar="OUT.jsonl", help="write every wire event here (audio elided)"
    )
    ask.add_argument("--text-only", action="store_true", help="ask for a text answer only")
    ask.add_argument("--mic", action="store_true", help="record the question from the mic")
    ask.add_argument("--play", action="store_true", help="play the answer on the speaker")
    ask.add_argument(
        "--timeout",
        metavar="S",
        type=_seconds,
        default=60.0,
        help="--mic: give up (exit 3) when no speech starts within S seconds "
        "(default 60; 0: wait for ever)",
    )
    ask.add_argument(
        "--approve-tools", action="store_true", help="run tool calls that need approval"
    )

    serve = subs.add_parser("serve", help="run the local Realtime server (tests, offline demo)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on")
    serve.add_argument(
        "--azure",
        action="store_true",
        help="behave like Azure OpenAI: transcription models must be deployments",
    )
    serve.add_argument(
        "--transcription-deployment",
        action="append",
        default=[],
        metavar="NAME",
        help="with --azure: a transcription deployment that exists (repeatable)",
    )
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require clients to present the key held in this environment variable",
    )

    subs.add_parser("devices", help="list audio devices")
    history = subs.add_parser("history", help="list stored sessions, newest first")
    history.add_argument("--all", action="store_true", help="list sessions without any turn too")

    export = subs.add_parser("export", help="export a stored session")
    export.add_argument("session", metavar="SESSION", help="session id or name (a prefix works)")
    export.add_argument("--format", choices=("md", "json"), default="md", help="output format")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    for sub in subs.choices.values():
        _add_global_options(sub, sub=True)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"expected seconds (0 or more), got {text!r}")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line settings, shaped like the config file (None: not given)."""
    return {
        "connection": {
            "url": getattr(args, "url", None),
            "model": getattr(args, "model", None),
            "insecure": args.insecure,
        },
        "session": {"voice": args.voice},
        "turn_mode": args.turn_mode,
        "audio": {
            "input_device": _device(args.input_device),
            "output_device": _device(args.output_device),
            "headphones": args.headphones,
        },
    }


def _device(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


def _error(command: str | None, message: str) -> None:
    prefix = f"voicecli {command}" if command else "voicecli"
    line = " ".join(str(message).split())
    sys.stderr.write(f"{prefix}: {line}\n")


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _setup_logging(debug: bool, command: str | None, data_dir: Path | None) -> Path | None:
    """With ``--debug``: log to stderr, or (for the full-screen UI, which owns the
    terminal) to ``DATA_DIR/debug.log``; every record goes through the redaction
    filter. Returns the log file, if any."""
    if not debug:
        return None
    handler: logging.Handler
    path: Path | None = None
    if command is None and data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "debug.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("voicecli").setLevel(logging.DEBUG)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: str | None = args.command
    try:
        if command == "serve":
            return _serve(args)
        config = load_config(args.config, os.environ, _overrides(args))
        for path in config.files:
            warning = config_file_warning(path)
            if warning:
                sys.stderr.write(warning + "\n")
        debug_log = _setup_logging(args.debug, command, config.data_dir)
        handler = _COMMANDS[command]
        code = handler(config, args)
        if debug_log is not None:
            sys.stderr.write(f"voicecli: debug log in {debug_log}\n")
        return code
    except ConfigError as exc:
        _error(command, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:  # the last resort: a file or directory, one line
        _error(command, _os_error(exc))
        return EXIT_FAILED


def _tui(config: Config, args: argparse.Namespace) -> int:
    if not sys.stdin.isatty():
        # Textual's input thread would spin a core for ever on a closed or piped stdin
        sys.stderr.write("voicecli needs a terminal; for scripts use `voicecli ask`\n")
        return EXIT_USAGE
    try:
        from voicecli.ui.app import VoiceApp, release_heap
        from voicecli.ui.screens.nokey import NO_KEY_EXIT, NoKeyApp
    except ImportError as exc:
        _error(None, f"the terminal UI is unavailable ({exc})")
        return EXIT_FAILED
    from voicecli.compose import build_ui_engine, endpoint

    with endpoint(config, local=args.local) as ep:
        if ep.key_missing:  # the UI explains how to set one
            code = NoKeyApp(str(config.api_key_env)).run()
            return NO_KEY_EXIT if code is None else int(code)
        built = build_ui_engine(ep)
        try:
            # no key sent (a local server): nothing to pay, so no cost estimate
            app = VoiceApp(
                built.engine, ep.config, notices=built.notices, show_cost=ep.api_key is not None
            )
            if args.debug:
                app.notify("debug: events are logged; press l for the event log")
            code = app.run()
        finally:
            built.close()
        del app, built
        release_heap()
        return 0 if code is None else int(code)


def _ask(config: Config, args: argparse.Namespace) -> int:
    from voicecli.compose import key_available, needs_key, run_ask

    if not args.local and needs_key(config) and not key_available(config, os.environ):
        _error(
            "ask",
            f"no API key: set {config.api_key_env} (or connection.api_key_command in the "
            "config file), or use --local for the built-in local server",
        )
        return EXIT_FAILED
    if args.input is None and not args.mic:
        _error("ask", "give INPUT.wav (or --mic)")
        return EXIT_USAGE
    return run_ask(config, args)


def _serve(args: argparse.Namespace) -> int:
    from voicecli.secrets import register_secret

    api_key: str | None = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip() or None
        if api_key is None:
            _error("serve", f"--api-key-env {args.api_key_env}: that variable is not set")
            return EXIT_USAGE
        register_secret(api_key)
    _setup_logging(args.debug, "serve", None)
    from voicecli.server import serve_forever

    deployments = tuple(args.transcription_deployment) if args.azure else None
    return serve_forever(args.host, args.port, api_key=api_key, azure_deployments=deployments)


def _devices(config: Config, args: argparse.Namespace) -> int:
    try:
        from voicecli.audio import devices
    except ImportError as exc:
        _error("devices", f"audio support is unavailable ({exc})")
        return EXIT_FAILED
    try:
        found = devices.list_devices()
    except devices.PortAudioMissing as exc:
        _error("devices", str(exc))
        return EXIT_FAILED
    except OSError as exc:
        _error("devices", f"cannot list audio devices ({exc})")
        return EXIT_FAILED
    sys.stdout.write(format_devices(found))
    return EXIT_OK


def _field(device: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(device, Mapping) and name in device:
            return device[name]
        if hasattr(device, name):
            return getattr(device, name)
    return default


def format_devices(found: Sequence[Any]) -> str:
    """A table of devices (index, in/out channels, default sample rate, default marks,
    name)."""
    if not found:
        return "no audio devices found\n"
    rows = [("#", "in", "out", "rate", "default", "name")]
    for i, dev in enumerate(found):
        index = _field(dev, "index", default=i)
        ins = _field(dev, "max_input_channels", "input_channels", "inputs", default=0)
        outs = _field(dev, "max_output_channels", "output_channels", "outputs", default=0)
        marks = []
        if _field(dev, "default_input", "is_default_input", default=False):
            marks.append("input")
        if _field(dev, "default_output", "is_default_output", default=False):
            marks.append("output")
        name = str(_field(dev, "name", default="?"))
        hostapi = _field(dev, "hostapi", "host_api", default=None)
        if isinstance(hostapi, str) and hostapi:
            name += f" ({hostapi})"
        rate = _field(dev, "default_samplerate", "samplerate", default=None)
        rate_text = f"{float(rate):g}" if isinstance(rate, (int, float)) and rate > 0 else "?"
        rows.append((str(index), str(ins), str(outs), rate_text, ",".join(marks), name))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = [
        "  ".join(
            cell.rjust(widths[c]) if c < 4 else cell.ljust(widths[c])
            for c, cell in enumerate(row[:5])
        )
        + "  "
        + row[5]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _history(config: Config, args: argparse.Namespace) -> int:
    from voicecli.history import History, summary

    records = History(config.data_dir).list_sessions()
    if not records:
        sys.stdout.write(f"no sessions yet in {config.data_dir / 'sessions'}\n")
        return EXIT_OK
    if not args.all:  # a session nobody spoke in (opened and quit) is noise
        empty = sum(1 for r in records if not r.turns)
        records = [r for r in records if r.turns]
        if not records:
            sys.stdout.write(
                f"no sessions with turns in {config.data_dir / 'sessions'} "
                f"({empty} without: voicecli history --all)\n"
            )
            return EXIT_OK
    rows = [("session", "started", "type", "turns", "first words")]
    for record in records:
        s = summary(record)
        started = str(s["started"])[:19].replace("T", " ")
        rows.append((s["name"], started, str(s["type"]), str(s["turns"]), s["first"]))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for row in rows:
        cells = [row[c].ljust(widths[c]) for c in range(4)]
        sys.stdout.write(("  ".join(cells) + "  " + row[4]).rstrip() + "\n")
    return EXIT_OK


def _export(config: Config, args: argparse.Namespace) -> int:
    from voicecli.history import History, HistoryError

    try:
        text = History(config.data_dir).export(args.session, args.format)
    except HistoryError as exc:
        _error("export", str(exc))
        return EXIT_FAILED
    if args.out:
        from voicecli.files import PRIVATE, write_file

        try:  # a conversation: private to the user, like the session logs
            write_file(args.out, text.encode("utf-8"), new_mode=PRIVATE)
        except OSError as exc:
            _error("export", f"cannot write {args.out}: {exc.strerror or exc}")
            return EXIT_FAILED
    else:
        sys.stdout.write(text)
    return EXIT_OK


_COMMANDS: dict[str | None, Callable[[Config, argparse.Namespace], int]] = {
    None: _tui,
    "ask": _ask,
    "devices": _devices,
    "history": _history,
    "export": _export,
}
