"""The mic pipeline: each 20 ms mic block -> level, echo handling, endpointing and turn
control -> the actions to take (append, commit, clear, barge-in).

Sans-I/O like the turn controller it drives: the engine hands it a block and the
speaker's state and gets a :class:`MicStep` back; nothing here sends, sleeps or
publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.echo import EchoGuard
from voicecli.audio.vad import Endpointer, SpeechEnd, SpeechStart
from voicecli.config import Config
from voicecli.engine.status import TurnMode, VadState
from voicecli.engine.turns import Action, TurnController

Int16Block = np.ndarray[Any, np.dtype[np.int16]]


@dataclass(slots=True)
class MicStep:
    """What one block changed."""

    level: float
    """Mic level 0..1 (dBFS mapped linearly from -60..0); 0 while muted."""
    actions: list[Action] = field(default_factory=list)
    vad: VadState | None = None
    """The local endpointer's new state, when it changed."""
    turn_ended: bool = False
    """A user turn the client decides ended with this block (the latency clock starts)."""


class MicPipeline:
    """See the module docstring. ``max_turns``: commit at most this many turns."""

    def __init__(self, config: Config, mode: TurnMode, *, max_turns: int | None = None) -> None:
        audio = config.audio
        echo_mode = "off" if audio.headphones else audio.echo_mode
        self.turns = TurnController(
            mode,
            echo_mode=echo_mode,
            max_turns=max_turns,
            min_turn_ms=float(config.vad.min_turn_ms),
        )
        self.endpointer = Endpointer(
            aggressiveness=config.vad.aggressiveness,
            silence_ms=config.vad.silence_ms,
            prefix_ms=config.vad.prefix_ms,
            start_frames=config.vad.start_frames,
            frame_ms=config.vad.frame_ms,
        )
        self.echo = EchoGuard(echo_mode, margin_db=audio.echo_margin_db)

    def feed(
        self, block: Int16Block, *, playing: bool, playback_dbfs: float | None
    ) -> MicStep:
        """One block: ``playing`` says whether the speaker is audible, ``playback_dbfs``
        how loud it plays (the echo guard's reference)."""
        tc = self.turns
        dbfs = rms_dbfs(block)
        # fed every block, playing or not: the guard counts time in mic samples, so only
        # then do its window and hold run on after playback stops (and old levels expire)
        echo_ok = self.echo.user_speaking(block, playback_dbfs)
        if tc.muted:
            return MicStep(level=0.0)
        step = MicStep(level=max(0.0, min(1.0, (dbfs + 60.0) / 60.0)))
        # the echo reaches the mic after the sink falls silent (device latency, the
        # room): while the guard still expects it, treat the assistant as audible
        tc.playing = playing or not echo_ok
        covered = False
        for event in self.endpointer.feed(block):
            if isinstance(event, SpeechStart):
                step.vad = "speech"
                step.actions.extend(tc.speech_start(event.preroll.tobytes(), echo_ok=echo_ok))
                # in local-vad the pre-roll carries this block (sent, or held as
                # possible echo); the server modes stream it below as any other
                covered = covered or tc.mode == "local-vad"
            elif isinstance(event, SpeechEnd):
                step.vad = "silence"
                step.turn_ended = step.turn_ended or tc.in_turn
                step.actions.extend(tc.speech_end())
        if not covered:
            ep = self.endpointer
            voiced = dbfs > ep.noise_floor_dbfs + ep.gate_db
            step.actions.extend(tc.block(block.tobytes(), echo_ok=echo_ok, voiced=voiced))
        return step


__all__ = ["MicPipeline", "MicStep"]
