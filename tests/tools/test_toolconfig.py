"""``[mcp_servers.NAME]`` tables: parsed, checked with one line naming the key, merged
across files; tool names for the API; the local server's call emulation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicecli.config import ConfigError, load_config
from voicecli.server.items import Item
from voicecli.server.tools import calls_for, example_arguments, quote_outputs
from voicecli.toolconfig import MissingEnvironment, parse_mcp_servers
from voicecli.tools.names import VALID_NAME, function_name, unique_name


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(config_file=path, env={}, user_file=False)


def test_a_stdio_and_an_http_server(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [mcp_servers.files]
        command = "npx"
        args = ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
        env = { DEBUG = "1" }
        cwd = "~/work"
        approval = "auto"
        tool_timeout_s = 5

        [mcp_servers.files.tools.write_file]
        approval = "ask"

        [mcp_servers.web]
        url = "https://mcp.example.com/mcp"
        headers = { "X-Team" = "${TEAM}" }
        bearer_token_env = "WEB_TOKEN"
        enabled = false
        """,
    )
    files, web = config.mcp_servers["files"], config.mcp_servers["web"]
    assert files.transport == "stdio" and files.args[0] == "-y"
    assert dict(files.env) == {"DEBUG": "1"} and files.cwd == Path("~/work").expanduser()
    assert (files.startup_timeout_s, files.tool_timeout_s) == (10.0, 5.0)
    assert files.approval_for("read_file") == "auto"
    assert files.approval_for("write_file") == "ask"
    assert web.transport == "http" and not web.enabled and web.approval == "ask"
    assert web.resolved_headers({"TEAM": "blue", "WEB_TOKEN": "t0k"}) == {
        "X-Team": "blue",
        "Authorization": "Bearer t0k",
    }
    with pytest.raises(MissingEnvironment, match="WEB_TOKEN"):
        web.resolved_headers({"TEAM": "blue"})


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ('command = "x"\nurl = "http://h/"', "mcp_servers.s", "either command"),
        ("args = []", "mcp_servers.s", "either command"),
        ('command = "x"\nargs = "a b"', "mcp_servers.s.args", "a list of strings"),
        ('command = "x"\nargs = [1]', "mcp_servers.s.args", "a list of strings"),
        ('command = "x"\napproval = "yes"', "mcp_servers.s.approval", '"ask", "auto", "never"'),
        ('command = "x"\ntool_timeout_s = 0', "mcp_servers.s.tool_timeout_s", "seconds"),
        ('command = "x"\nstartup_timeout_s = "10"', "mcp_servers.s.startup_timeout_s", "seconds"),
        ('command = "x"\nenabled = "yes"', "mcp_servers.s.enabled", "true or false"),
        ('command = "x"\nenv = { A = 1 }', "mcp_servers.s.env.A", "a string"),
        ('command = "x"\ncomand = "y"', "mcp_servers.s.comand", "unknown key"),
        ('command = "x"\nheaders = {}', "mcp_servers.s.headers", "does not apply"),
        ('url = "ftp://h/"', "mcp_servers.s.url", "http:// or https://"),
        (
            'url = "http://h/"\nbearer_token_env = "sk-abc def"',
            "mcp_servers.s.bearer_token_env",
            "NAME",
        ),
        ('command = "x"\nhosted = true', "mcp_servers.s.hosted", "only to a server with url"),
        (
            'command = "x"\n[mcp_servers.s.tools.t]\napprove = "auto"',
            "mcp_servers.s.tools.t.approve",
            "unknown key",
        ),
        (
            'command = "x"\n[mcp_servers.s.tools.t]\napproval = "maybe"',
            "mcp_servers.s.tools.t.approval",
            '"ask"',
        ),
    ],
)
def test_a_bad_table_is_one_line_naming_the_key(
    tmp_path: Path, table: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[mcp_servers.s]\n{table}\n")
    message = str(info.value)
    assert "\n" not in message
    assert info.value.key == key, message
    assert expected in message
    assert message.startswith(str(tmp_path / "config.toml"))


def test_a_bad_server_name_and_a_non_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mcp_servers\.a\.b\.c"):
        parse_or_raise({"a.b.c": {"command": "x"}})
    with pytest.raises(ConfigError, match="expected a table"):
        load(tmp_path, 'mcp_servers = "x"\n')


def parse_or_raise(value: Any) -> None:
    from voicecli.toolconfig import ToolConfigError

    try:
        parse_mcp_servers(value)
    except ToolConfigError as exc:
        raise ConfigError("test", exc.key, exc.expected) from None


def test_a_later_file_changes_one_servers_keys(tmp_path: Path) -> None:
    first = tmp_path / "a.toml"
    first.write_text('[mcp_servers.s]\ncommand = "x"\n[mcp_servers.other]\ncommand = "y"\n')
    xdg = tmp_path / "xdg"
    (xdg / "voicecli").mkdir(parents=True)
    (xdg / "voicecli" / "config.toml").write_text(first.read_text())
    second = tmp_path / "b.toml"
    second.write_text('[mcp_servers.s]\napproval = "never"\n')
    config = load_config(config_file=second, env={"XDG_CONFIG_HOME": str(xdg)})
    assert config.mcp_servers["s"].command == "x"
    assert config.mcp_servers["s"].approval == "never"
    assert set(config.mcp_servers) == {"s", "other"}


def test_no_servers_by_default(tmp_path: Path) -> None:
    assert dict(load(tmp_path, "").mcp_servers) == {}


# -- names ---------------------------------------------------------------------------------


def test_names_keep_the_api_rules() -> None:
    assert function_name("files", "read_file") == "files__read_file"
    dotted = function_name("files", "fs.read")
    assert VALID_NAME.fullmatch(dotted) and dotted.startswith("files__fs_read_")
    assert dotted != function_name("files", "fs_read")  # a hash keeps them apart
    long = function_name("s", "x" * 100)
    assert len(long) == 64 and VALID_NAME.fullmatch(long)
    assert long != function_name("s", "x" * 101)
    assert unique_name("a", {"a", "a_2"}) == "a_3"


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=200))
def test_every_name_is_valid(server: str, tool: str) -> None:
    assert VALID_NAME.fullmatch(function_name(server, tool))


# -- the local server's emulation -------------------------------------------------------------


def user(text: str) -> Item:
    return Item(
        id="item_1", type="message", role="user", content=[{"type": "input_text", "text": text}]
    )


TOOLS = [
    {
        "type": "function",
        "name": "t__add",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "number"},
                "c": {"type": "string"},
            },
            "required": ["a", "b"],
        },
    },
    {"type": "function", "name": "t__echo", "parameters": {"type": "object", "properties": {}}},
]


def test_the_local_server_calls_named_tools() -> None:
    calls = calls_for(TOOLS, "auto", user('call t__add {"a": 5, "b": {"x": [1]}} and call t__echo'))
    assert [(t["name"], json.loads(a)) for t, a in calls] == [
        ("t__add", {"a": 5, "b": {"x": [1]}}),
        ("t__echo", {}),
    ]
    named = calls_for(TOOLS, "auto", user("what does T__ADD say?"))
    assert [(t["name"], json.loads(a)) for t, a in named] == [("t__add", {"a": 1, "b": 1.0})]
    assert calls_for(TOOLS, "auto", user("hello")) == []
    assert calls_for(TOOLS, "none", user("call t__add")) == []
    assert calls_for(TOOLS, "required", user("hello"))[0][0]["name"] == "t__add"
    forced = calls_for(TOOLS, {"type": "function", "name": "t__echo"}, user("hello"))
    assert forced[0][0]["name"] == "t__echo"


def test_example_arguments_fit_the_schema() -> None:
    tool = {
        "parameters": {
            "type": "object",
            "properties": {
                "mode": {"enum": ["fast", "slow"]},
                "n": {"type": ["null", "integer"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "flag": {"type": "boolean", "default": False},
            },
        }
    }
    assert json.loads(example_arguments(tool)) == {
        "mode": "fast",
        "n": 1,
        "tags": ["example"],
        "flag": False,
    }


def test_the_reply_quotes_every_output_since_the_question() -> None:
    items = [
        user("q"),
        Item(id="c1", type="function_call", call_id="1", name="a", arguments="{}"),
        Item(id="c2", type="function_call", call_id="2", name="b", arguments="{}"),
        Item(id="o1", type="function_call_output", call_id="1", output="one"),
        Item(id="o2", type="function_call_output", call_id="2", output="two"),
    ]
    assert quote_outputs(items) == "The function returned: one The function returned: two"
    assert quote_outputs(items[:1]) is None


def test_the_example_config_documents_every_key_and_parses() -> None:
    from voicecli.toolconfig import _KEYS

    text = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    start = text.index("# [mcp_servers.files]")
    setting = re.compile(r"#\s+(\[.+\]|[a-z_]+ = .*)")
    lines = [m.group(1) for m in map(setting.fullmatch, text[start:].splitlines()) if m]
    example = "\n".join(lines)
    for key in _KEYS:
        assert f"\n{key} = " in example or key == "tools", key
    from voicecli.config import tomllib  # tomli on Python 3.10

    servers = parse_mcp_servers(tomllib.loads(example)["mcp_servers"])
    assert servers["files"].approval_for("read_text_file") == "auto"
    assert servers["search"].bearer_token_env == "SEARCH_TOKEN"
    assert servers["docs"].hosted and servers["docs"].allowed_tools == ("search",)


async def test_a_hosted_server_starts_nothing_locally() -> None:
    """The service calls a hosted server: the runner starts no client for it and warns
    of nothing; it is declared instead (tests/tools/test_hosted.py)."""
    from voicecli.tools import ToolRunner

    warnings: list[str] = []
    runner = ToolRunner(
        parse_mcp_servers({"remote": {"url": "https://h/mcp", "hosted": True}}), warnings.append
    )
    assert await runner.start() == []
    assert warnings == []
    assert [t["server_label"] for t in runner.hosted_declarations()] == ["remote"]
