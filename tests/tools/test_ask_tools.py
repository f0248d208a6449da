"""``voicecli ask`` with an MCP server: headless, it never prompts. A tool needing
approval is declined with one line on stderr unless ``--approve-tools``; then it runs
and the answer quotes it. The local server calls the first declared tool for a spoken
question (``Faults.call_tools_on_audio``: it has no speech recognition)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.engine.conftest import speech_wav
from tests.engine.test_ask import run_ask
from tests.tools.conftest import ROOT
from voicecli.server import BackgroundServer
from voicecli.server.faults import Faults

__all__ = ["speech_wav"]  # the fixture


def write_config(tmp_path: Path, approval: str, marker: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(
        "[mcp_servers.t]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f'args = ["-m", "tests.tools.mcp_server", "stdio", "{marker}"]\n'
        f"cwd = {json.dumps(str(ROOT))}\n"
        f'approval = "{approval}"\n'
        "startup_timeout_s = 60\n"
    )
    return path


def ask(tmp_path: Path, wav: Path, *flags: str, approval: str = "ask") -> tuple[int, str, str]:
    marker = f"voicecli-test-{uuid.uuid4().hex}"
    with BackgroundServer(pace=0, faults=Faults(call_tools_on_audio=True)) as server:
        proc = run_ask(
            "--config",
            str(write_config(tmp_path, approval, marker)),
            "ask",
            str(wav),
            "--text-only",
            "--url",
            server.url,
            *flags,
            tmp_path=tmp_path,
            env={"OPENAI_API_KEY": "sk-x"},
            timeout=120,
        )
        outputs = [
            e["item"]["output"]
            for e in server.server.received
            if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"
        ]
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "an MCP server outlived voicecli ask"
    return proc.returncode, proc.stdout + "\n".join(outputs), proc.stderr


@pytest.mark.slow
def test_ask_declines_a_tool_needing_approval_and_says_so(tmp_path: Path, speech_wav: Path) -> None:
    code, out, err = ask(tmp_path, speech_wav)
    assert code == 0, err
    assert err.strip() == (
        "voicecli ask: tool t__echo needs approval: declined (--approve-tools would allow it)"
    )
    assert "echo: example" not in out
    assert "The function returned: The user declined this tool call." in out


@pytest.mark.slow
def test_ask_approve_tools_runs_it_and_the_answer_quotes_it(
    tmp_path: Path, speech_wav: Path
) -> None:
    code, out, err = ask(tmp_path, speech_wav, "--approve-tools")
    assert code == 0, err
    assert err.strip() == ""
    assert out.splitlines()[1] == "assistant: The function returned: echo: example"


@pytest.mark.slow
def test_ask_runs_an_auto_tool_without_the_flag(tmp_path: Path, speech_wav: Path) -> None:
    code, out, err = ask(tmp_path, speech_wav, approval="auto")
    assert code == 0, err
    assert "assistant: The function returned: echo: example" in out
