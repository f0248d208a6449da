"""voicecli: an interactive terminal voice client for the OpenAI Realtime API."""

__version__ = "0.1.0"
