"""Configuration: defaults, layering, one-line errors, key sources, the example file."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicecli.config import (
    DEFAULT_KEYS,
    DEFAULT_MODEL,
    DEFAULT_URL,
    AudioConfig,
    Config,
    ConfigError,
    ConnectionConfig,
    SessionConfig,
    StorageConfig,
    Transcription,
    TurnDetection,
    VadConfig,
    all_keys,
    load_config,
    user_config_path,
)
from voicecli.secrets import (
    REDACTED,
    ApiKeyError,
    RedactingFilter,
    config_file_warning,
    redact,
    resolve_api_key,
)
from voicecli.session import SessionModel

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"


@pytest.fixture
def xdg(tmp_path: Path) -> dict[str, str]:
    """An environment whose config and data homes live in tmp_path."""
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def write_user_config(env: dict[str, str], text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "voicecli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- defaults ---------------------------------------------------------------------------


def test_defaults(xdg: dict[str, str]) -> None:
    cfg = load_config(env=xdg)
    assert cfg.connection.url == DEFAULT_URL
    assert cfg.connection.model == DEFAULT_MODEL
    assert cfg.connection.provider == "auto"
    assert cfg.connection.insecure is False
    assert cfg.api_key_env == "OPENAI_API_KEY"
    assert cfg.api_key_command is None
    assert cfg.turn_mode == "local-vad"
    assert cfg.session.voice == "marin"
    assert cfg.session.output_modalities == ("audio",)
    assert dict(cfg.keys) == dict(DEFAULT_KEYS)
    assert cfg.data_dir == Path(xdg["XDG_DATA_HOME"]) / "voicecli"
    assert cfg.files == ()
    # the key is never a field of any settings object
    names = {f.name for cls in _all_dataclasses() for f in dataclasses.fields(cls)}
    assert "api_key" not in names


def test_defaults_session_payload_is_client_decides() -> None:
    payload = SessionModel(Config()).payload()
    assert payload["type"] == "realtime"
    assert payload["audio"]["input"]["turn_detection"] is None
    assert payload["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert payload["audio"]["output"]["voice"] == "marin"
    assert payload["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}


def test_echo_margin_db_default_and_override(tmp_path: Path, xdg: dict[str, str]) -> None:
    assert load_config(env=xdg).audio.echo_margin_db == 10.0
    path = tmp_path / "c.toml"
    path.write_text("[audio]\necho_margin_db = 6\n")
    assert load_config(path, env=xdg).audio.echo_margin_db == 6.0


def test_server_vad_payload(xdg: dict[str, str]) -> None:
    cfg = load_config(env=xdg, overrides={"turn_mode": "server-vad"})
    td = SessionModel(cfg).payload()["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"
    assert td["silence_duration_ms"] == 500
    cfg = load_config(env=xdg, overrides={"turn_mode": "semantic-vad"})
    td = SessionModel(cfg).payload()["audio"]["input"]["turn_detection"]
    assert td == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }


def test_user_config_path_follows_xdg(xdg: dict[str, str]) -> None:
    assert user_config_path(xdg) == Path(xdg["XDG_CONFIG_HOME"]) / "voicecli" / "config.toml"
    assert user_config_path({"XDG_CONFIG_HOME": "relative/dir"}) is None


# --- layering ---------------------------------------------------------------------------


def test_layering_file_then_config_then_env_then_flags(tmp_path: Path, xdg: dict[str, str]) -> None:
    user = write_user_config(
        xdg,
        '[connection]\nurl = "ws://127.0.0.1:1/user"\nmodel = "user-model"\n'
        '[session]\nvoice = "ash"\nspeed = 1.2\n[vad]\naggressiveness = 1\n',
    )
    extra = tmp_path / "extra.toml"
    extra.write_text(
        '[connection]\nurl = "ws://127.0.0.1:2/extra"\nmodel = "extra-model"\n'
        '[session]\nvoice = "coral"\n',
        encoding="utf-8",
    )
    # file only
    cfg = load_config(env=xdg)
    assert (cfg.connection.url, cfg.connection.model, cfg.session.voice) == (
        "ws://127.0.0.1:1/user",
        "user-model",
        "ash",
    )
    assert cfg.files == (user,)
    # --config wins over the user file; keys it does not set stay from the user file
    cfg = load_config(extra, env=xdg)
    assert cfg.connection.url == "ws://127.0.0.1:2/extra"
    assert cfg.session.voice == "coral"
    assert cfg.session.speed == 1.2
    assert cfg.vad.aggressiveness == 1
    assert cfg.files == (user, extra)
    # environment wins over both files
    env = {**xdg, "VOICECLI_URL": "ws://127.0.0.1:3/env", "VOICECLI_MODEL": "env-model"}
    cfg = load_config(extra, env=env)
    assert (cfg.connection.url, cfg.connection.model) == ("ws://127.0.0.1:3/env", "env-model")
    # flags win over everything; None flags are "not given"
    cfg = load_config(
        extra,
        env=env,
        overrides={
            "connection": {"url": "ws://127.0.0.1:4/flag", "model": None},
            "session.voice": "sage",
        },
    )
    assert cfg.connection.url == "ws://127.0.0.1:4/flag"
    assert cfg.connection.model == "env-model"
    assert cfg.session.voice == "sage"


def test_user_file_can_be_skipped(xdg: dict[str, str]) -> None:
    write_user_config(xdg, '[session]\nvoice = "ash"\n')
    assert load_config(env=xdg, user_file=False).session.voice == "marin"


def test_later_source_wins_turn_mode_disagreement(tmp_path: Path, xdg: dict[str, str]) -> None:
    write_user_config(xdg, '[session.turn_detection]\ntype = "semantic_vad"\n')
    assert load_config(env=xdg).turn_mode == "semantic-vad"
    cfg = load_config(env=xdg, overrides={"turn_mode": "server-vad"})
    assert cfg.turn_mode == "server-vad"
    assert cfg.session.turn_detection.type == "server_vad"
    both = tmp_path / "both.toml"
    both.write_text(
        'turn_mode = "server-vad"\n[session.turn_detection]\ntype = "semantic_vad"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(both, env=xdg)
    message = one_line_error(excinfo)
    assert str(both) in message and "session.turn_detection.type" in message


# --- errors -----------------------------------------------------------------------------


def _load_text(tmp_path: Path, text: str, env: dict[str, str]) -> tuple[Path, str]:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env=env)
    return path, one_line_error(excinfo)


def test_unknown_key_names_file_key_and_suggests(tmp_path: Path, xdg: dict[str, str]) -> None:
    path, message = _load_text(tmp_path, '[session]\nvoise = "ash"\n', xdg)
    assert message.startswith(f"{path}: session.voise: unknown key")
    assert "'session.voice'" in message


def test_right_key_wrong_section(tmp_path: Path, xdg: dict[str, str]) -> None:
    _, message = _load_text(tmp_path, '[audio]\nvoice = "ash"\n', xdg)
    assert "audio.voice" in message and "'session.voice'" in message


def test_api_key_in_config_is_refused_without_echoing_it(
    tmp_path: Path, xdg: dict[str, str]
) -> None:
    secret = "sk-test-SECRET123abcdefghijkl"
    _, message = _load_text(tmp_path, f'[connection]\napi_key = "{secret}"\n', xdg)
    assert "connection.api_key" in message
    assert "api_key_env" in message
    assert secret not in message


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[session]\nspeed = "fast"\n', "session.speed", "a number from 0.25 to 1.5"),
        ("[session]\nspeed = 3.0\n", "session.speed", "a number from 0.25 to 1.5"),
        ('[connection]\ninsecure = "yes"\n', "connection.insecure", "true or false"),
        ('[connection]\nurl = "ftp://x"\n', "connection.url", "ws://, wss://, http:// or https://"),
        ('turn_mode = "auto"\n', "turn_mode", '"local-vad"'),
        ("[vad]\nframe_ms = 25\n", "vad.frame_ms", "one of 10, 20, 30"),
        ("[vad]\naggressiveness = 4\n", "vad.aggressiveness", "an integer from 0 to 3"),
        ("[audio]\necho_margin_db = 2\n", "audio.echo_margin_db", "a number from 3"),
        ("[audio]\necho_margin_db = 31\n", "audio.echo_margin_db", "to 30"),
        (
            '[session]\noutput_modalities = ["audio", "text"]\n',
            "session.output_modalities",
            '["audio"] or ["text"]',
        ),
        (
            '[connection]\napi_key_env = "sk-abc def"\n',
            "connection.api_key_env",
            "NAME of an environment variable",
        ),
        ('session = "x"\n', "session", "expected a table"),
        ('[keys]\nmute = "space"\n', "keys.mute", "already bound"),
        ('[keys]\nfly = "f"\n', "keys.fly", "unknown action"),
        ("[profiles.x]\nspeed = 9\n", "profiles.x.speed", "a number from 0.25 to 1.5"),
    ],
)
def test_wrong_type_or_value(
    tmp_path: Path, xdg: dict[str, str], text: str, key: str, expected: str
) -> None:
    path, message = _load_text(tmp_path, text, xdg)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message


def test_bad_toml_names_file_and_line(tmp_path: Path, xdg: dict[str, str]) -> None:
    path, message = _load_text(tmp_path, "[session\nvoice = 'x'\n", xdg)
    assert message.startswith(f"{path}: TOML syntax error")
    assert "line 1" in message


def test_missing_config_file(tmp_path: Path, xdg: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path / "nope.toml", env=xdg)
    assert "no such config file" in one_line_error(excinfo)


def test_errors_from_environment_and_flags_name_their_source(xdg: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(env={**xdg, "VOICECLI_URL": "not a url"})
    message = one_line_error(excinfo)
    assert message.startswith("environment (VOICECLI_URL/VOICECLI_MODEL): connection.url:")
    with pytest.raises(ConfigError) as excinfo:
        load_config(env=xdg, overrides={"session": {"voice": " "}})
    assert one_line_error(excinfo).startswith("command line: session.voice: expected a voice")


def test_none_string_means_unset(tmp_path: Path, xdg: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[session]\ninstructions = "none"\n[session.transcription]\nmodel = "none"\n',
        encoding="utf-8",
    )
    cfg = load_config(path, env=xdg)
    assert cfg.session.instructions is None
    assert cfg.session.transcription.model is None
    assert SessionModel(cfg).payload()["audio"]["input"]["transcription"] is None


# --- the API key ------------------------------------------------------------------------


def test_api_key_from_env_then_command(tmp_path: Path) -> None:
    conn = ConnectionConfig(
        api_key_env="MY_KEY",
        api_key_command=f"{sys.executable} -c \"print('\\n  sk-from-cmd-1234  ')\"",
    )
    assert resolve_api_key(conn, {"MY_KEY": " sk-from-env-1234 "}) == "sk-from-env-1234"
    assert resolve_api_key(conn, {}) == "sk-from-cmd-1234"
    assert resolve_api_key(ConnectionConfig(), {}) is None
    # both resolved keys are now scrubbed from logs
    assert redact("a sk-from-cmd-1234 b sk-from-env-1234") == f"a {REDACTED} b {REDACTED}"


def test_api_key_command_failures_are_one_line_without_output(tmp_path: Path) -> None:
    script = tmp_path / "leaky.py"
    script.write_text(
        "import sys\nprint('sk-leaked-from-stdout-999')\n"
        "print('sk-leaked-from-stderr-999', file=sys.stderr)\nsys.exit(3)\n",
        encoding="utf-8",
    )
    conn = ConnectionConfig(api_key_command=f"{sys.executable} {script} --token sk-in-argv-999")
    with pytest.raises(ApiKeyError) as excinfo:
        resolve_api_key(conn, {})
    message = str(excinfo.value)
    assert "\n" not in message
    assert "exited with status 3" in message
    assert message.startswith("connection.api_key_command: ")
    for leaked in ("sk-leaked-from-stdout-999", "sk-leaked-from-stderr-999", "sk-in-argv-999"):
        assert leaked not in message
    with pytest.raises(ApiKeyError, match="was not found"):
        resolve_api_key(ConnectionConfig(api_key_command="/nonexistent/keytool"), {})
    with pytest.raises(ApiKeyError, match="printed nothing"):
        resolve_api_key(ConnectionConfig(api_key_command=f"{sys.executable} -c pass"), {})


def test_api_key_command_from_config_file(tmp_path: Path, xdg: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[connection]\napi_key_command = "{sys.executable} -c \\"print(42424242)\\""\n',
        encoding="utf-8",
    )
    cfg = load_config(path, env=xdg)
    assert resolve_api_key(cfg, {}) == "42424242"


def test_redacting_filter_scrubs_args_and_tracebacks() -> None:
    import logging

    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "key=%s", ("sk-filter-test-77",), None
    )
    try:
        raise ValueError("boom sk-filter-test-77")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter(["sk-filter-test-77"]).filter(record)
    assert record.getMessage() == f"key={REDACTED}"
    assert record.exc_text is not None and "sk-filter-test-77" not in record.exc_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_readable_config_holding_a_key_warns(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('# api_key = "sk-abcdefghijklmnopqrstuvwx"\n', encoding="utf-8")
    path.chmod(0o644)
    warning = config_file_warning(path)
    assert warning is not None and "\n" not in warning
    assert "chmod 600" in warning and str(path) in warning
    assert "sk-abcdefghijklmnopqrstuvwx" not in warning
    path.chmod(0o600)
    assert config_file_warning(path) is None
    plain = tmp_path / "plain.toml"
    plain.write_text('[session]\nvoice = "ash"\n', encoding="utf-8")
    plain.chmod(0o644)
    assert config_file_warning(plain) is None
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644


# --- the example file -------------------------------------------------------------------


def _all_dataclasses() -> list[type[Any]]:
    seen: list[type[Any]] = []

    def walk(cls: type[Any]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for hint in get_type_hints(cls).values():
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint)

    walk(Config)
    return seen


def _example_keys() -> set[str]:
    """Every ``key`` set in the example, active or commented out, as ``section.key``."""
    found: set[str] = set()
    section = ""
    for raw in EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        header = re.fullmatch(r"\[([A-Za-z0-9_.]+)\]", line)
        if header:
            section = header.group(1)
            continue
        m = re.fullmatch(r"#?\s*([a-z_]+)\s*=\s*\S.*", line)
        if m:
            found.add(f"{section}.{m.group(1)}" if section else m.group(1))
    return found


def test_example_loads() -> None:
    cfg = load_config(config_file=EXAMPLE, env={}, user_file=False)
    assert cfg.files == (EXAMPLE,)
    assert cfg == dataclasses.replace(
        Config(), profiles=cfg.profiles, files=cfg.files, storage=cfg.storage
    ), "the example's active values must be the defaults"
    assert set(cfg.profiles) == {"calm", "typist"}


def test_example_commented_values_are_valid(tmp_path: Path) -> None:
    """Uncommenting every commented-out setting still loads."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = .+)$", r"\1", text)
    path = tmp_path / "all.toml"
    path.write_text(uncommented, encoding="utf-8")
    cfg = load_config(path, env={}, user_file=False)
    assert cfg.api_key_command == "pass show openai/api-key"
    assert cfg.session.turn_detection.idle_timeout_ms == 10000
    assert cfg.audio.output_device == 3


def test_example_documents_every_field() -> None:
    documented = _example_keys()
    sections = {
        ConnectionConfig: "connection",
        SessionConfig: "session",
        TurnDetection: "session.turn_detection",
        Transcription: "session.transcription",
        AudioConfig: "audio",
        VadConfig: "vad",
        StorageConfig: "storage",
    }
    missing: list[str] = []
    for cls in _all_dataclasses():
        if cls is Config:
            continue
        assert cls in sections, f"new settings class {cls.__name__}: add it to this test"
        for f in dataclasses.fields(cls):
            hint = get_type_hints(cls)[f.name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                continue  # a sub-table, checked through its own class
            if f"{sections[cls]}.{f.name}" not in documented:
                missing.append(f"{sections[cls]}.{f.name}")
    for path in all_keys():
        if (path.startswith("keys.") or path == "turn_mode") and path not in documented:
            missing.append(path)
    assert not missing, f"config.example.toml does not document: {missing}"
    assert any(k.startswith("profiles.") for k in documented)


# --- robustness -------------------------------------------------------------------------

_leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["none", "", "server_vad", "semantic-vad", "audio", "ws://127.0.0.1:1", "q"]),
    st.lists(st.sampled_from(["audio", "text", 1]), max_size=3),
)
_key_names = st.sampled_from(
    sorted({p.split(".")[-1] for p in all_keys()} | {"session", "connection", "bogus", "NAME"})
)


def _tables(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _leaf_values
    return st.dictionaries(_key_names, st.one_of(_leaf_values, _tables(depth - 1)), max_size=4)


_documents = st.dictionaries(
    st.sampled_from(
        ["turn_mode", "keys", "profiles", "connection", "session", "audio", "vad", "storage", "x"]
    ),
    _tables(3),
    max_size=4,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_documents)
def test_any_document_loads_or_fails_with_one_line(doc: dict[str, Any]) -> None:
    try:
        cfg = load_config(env={}, overrides=doc, user_file=False)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert str(exc).startswith("command line: ")
    else:
        SessionModel(cfg).payload()  # whatever loaded can be sent
