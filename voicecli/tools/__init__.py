"""Tools the model can call: MCP servers' tools as Realtime function tools.

Importing this package does not import the ``mcp`` package (the optional
``voicecli[mcp]`` extra); :class:`~voicecli.tools.runner.ToolRunner` loads it when it
starts servers.
"""

from voicecli.tools.runner import ToolOutcome, ToolRunner, ToolSpec

__all__ = ["ToolOutcome", "ToolRunner", "ToolSpec"]
