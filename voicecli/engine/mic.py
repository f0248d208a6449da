"""The mic pipeline: each 20 ms mic block -> echo cancellation, level, echo handling,
endpointing and turn control -> the actions to take (append, commit, clear, barge-in).

With ``echo_mode`` ``aec`` every block first goes through the
:class:`~voicecli.audio.aec.EchoCanceller` and everything after it (level, VAD, the
appends, the recording) sees the cleaned block. The echo guard then judges the
*cleaned* signal with the canceller's evidence: a block it removed ``AEC_CANCELLED_DB``
from is echo and its residual is learned (starting from the safe 0 dB, over
``AEC_LEARN_MS``), so a canceller that has not converged yet cannot make the first
reply interrupt itself; a block it kept counts as the user when it is
``echo_margin_db`` above that residual, two blocks in a row. A barge-in says how long
the voice had been going, so the truncate can go back to its onset.

Sans-I/O like the turn controller it drives: the engine hands it a block and the
speaker's state and gets a :class:`MicStep` back; nothing here sends, sleeps or
publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from voicecli.audio.aec import (
    AecUnavailable,
    EchoCanceller,
    EchoInForce,
    aec_available,
    resolve_echo_mode,
)
from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.echo import EchoGuard
from voicecli.audio.tap import FarEndTap
from voicecli.audio.vad import Endpointer, SpeechEnd, SpeechStart
from voicecli.config import Config
from voicecli.engine.status import TurnMode, VadState
from voicecli.engine.turns import Action, BargeIn, TurnController
from voicecli.pcm import SAMPLE_RATE

Int16Block = np.ndarray[Any, np.dtype[np.int16]]

AEC_LEARN_MS = 1000
"""With ``aec``: the residual-echo check's learning window (the canceller converges
in about a second: see the README)."""
AEC_ADDED_DB = 3.0
"""With ``aec``: a cleaned block this much louder than the raw mic is the canceller's
own error, never the user (a voice adds to both)."""
AEC_CANCELLED_DB = 6.0
"""With ``aec``: a block the canceller took this much out of was echo (its residual is
what the check learns); a block it kept is judged by level and never learned from.
Measured on the -6 / -20 dB loopback (``bench_aec.py --dump``, replayed): a voice as
loud as the echo loses -5..+8 dB, mostly under 6; the echo alone 20-80 dB, but a
word's onset after a pause in the reply only 8-13 dB (at 10 dB, 2 of 40 replies
interrupted themselves in the replay; at 6 and 8 dB none)."""
AEC_CONFIRM_BLOCKS = 2
"""With ``aec``: a block counts as the user only when the residual check passed this
many blocks in a row (20 ms each)."""
AEC_MIN_COUPLING_DB = -40.0
"""With ``aec``: the lowest residual echo (re the playback peak) the check may learn:
a voice must be at least ``echo_margin_db`` above it. A canceller that removed the
echo completely for a while would teach a lower one, and the next residual burst (a
word's onset after a pause, a shifted far end) would pass for the user. Before the
canceller's own evidence counted (``AEC_CANCELLED_DB``) that took a floor of -30 dB
(3 of 20 replies interrupted themselves at -40 dB), which kept a voice as loud as a
-20 dB echo from ever interrupting; with it, -40 dB passes that voice and no reply
interrupted itself (``benchmarks/bench_aec.py``)."""


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
    block: Int16Block | None = None
    """The block as everything downstream sees it (echo cancelled with ``aec``)."""
    notice: str | None = None
    """The echo canceller failed with this block: one line (now on the echo guard)."""
    echo_ok: bool = True
    """The echo handling let this block count as the user's (benchmarks read it)."""
    echo_learning: bool = False
    """Playing while the echo check still learns the echo path: only a voice clearly
    louder than the playback interrupts yet (the status bar says so)."""


class MicPipeline:
    """See the module docstring. ``max_turns``: commit at most this many turns."""

    def __init__(self, config: Config, mode: TurnMode, *, max_turns: int | None = None) -> None:
        audio = config.audio
        self._margin_db = audio.echo_margin_db
        wants_aec = audio.echo_mode in ("auto", "aec") and not audio.headphones
        self.echo_mode: EchoInForce
        self.echo_mode, self.notice = resolve_echo_mode(
            audio.echo_mode, headphones=audio.headphones, available=wants_aec and aec_available()
        )
        """The echo handling in force; ``notice``: why it differs from the config."""
        self.canceller: EchoCanceller | None = None
        if self.echo_mode == "aec":
            try:
                self.canceller = EchoCanceller.from_config(audio)
            except AecUnavailable as exc:
                self.echo_mode, self.notice = "guard", f"{exc}: using the echo guard"
        self.turns = TurnController(
            mode,
            echo_mode="guard" if self.echo_mode == "aec" else self.echo_mode,
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
        self.echo = self._guard()
        self._passed = 0  # consecutive blocks the residual check passed (aec)
        self._heard_ms = 0.0  # mic time fed to the endpointer (its clock)
        self._onset_ms: float | None = None  # the last speech onset, on that clock

    def _guard(self) -> EchoGuard:
        if self.echo_mode == "aec":
            return EchoGuard(
                "guard",
                margin_db=self._margin_db,
                learn_ms=AEC_LEARN_MS,
                min_coupling_db=AEC_MIN_COUPLING_DB,
                cancelled_db=AEC_CANCELLED_DB,
            )
        return EchoGuard(self.echo_mode, margin_db=self._margin_db)

    def attach_far_end(self, tap: FarEndTap | None) -> None:
        """The speaker's far-end tap. None: no device plays into a device mic (a file
        in or out): there is no echo to cancel, so the canceller stands down and the
        echo guard (which passes audio nothing audible explains) takes over."""
        if self.canceller is None:
            return
        if tap is None:
            self.canceller, self.echo_mode = None, "guard"
            self.echo = self._guard()
            return
        self.canceller.attach(tap)

    def _cancel(self, block: Int16Block, adc_time: float | None, step: MicStep) -> Int16Block:
        if self.canceller is None:
            return block
        try:
            realigned = self.canceller.realigned
            cleaned = self.canceller.process(block, adc_time)
            if self.canceller.realigned != realigned:
                # the far end jumped (a speaker underrun): the canceller must find the
                # echo again, so the residual check starts from the safe side again
                self.echo.relearn()
            return cleaned
        except AecUnavailable as exc:
            # one notice; the guard takes over with its own (safe) initial echo path
            self.canceller, self.echo_mode = None, "guard"
            self.echo = self._guard()
            step.notice = f"{exc}: using the echo guard"
            return block

    def feed(
        self,
        block: Int16Block,
        *,
        playing: bool,
        playback_dbfs: float | None,
        adc_time: float | None = None,
    ) -> MicStep:
        """One block: ``playing`` says whether the speaker is audible, ``playback_dbfs``
        how loud it plays (the echo guard's reference), ``adc_time`` when it was
        captured (the source's ``block_adc_time``; aligns the canceller's far end)."""
        tc = self.turns
        step = MicStep(level=0.0)
        # cancelled even while muted: the canceller keeps tracking the echo path
        raw = block
        block = step.block = self._cancel(block, adc_time, step)
        dbfs = rms_dbfs(block)
        # fed every block, playing or not: the guard counts time in mic samples, so only
        # then do its window and hold run on after playback stops (and old levels expire)
        cancelled = step.block is not raw
        raw_dbfs = rms_dbfs(raw) if cancelled else dbfs
        echo_ok = self.echo.user_speaking(
            block, playback_dbfs, removed_db=raw_dbfs - dbfs if cancelled else None
        )
        if cancelled and dbfs > raw_dbfs + AEC_ADDED_DB:
            # the canceller subtracted an echo that was not there (the echo path broke
            # off: a speaker underrun, a moved device): its output is no one's voice
            echo_ok = False
        if cancelled:
            # a residual burst (the canceller briefly losing the echo) lasts one block;
            # the user's voice passes for several in a row: take the second
            echo_ok, self._passed = (
                echo_ok and self._passed >= AEC_CONFIRM_BLOCKS - 1,
                (self._passed + 1 if echo_ok else 0),
            )
        step.echo_ok = echo_ok
        step.echo_learning = playing and self.echo.learning
        if tc.muted:
            return step
        step.level = max(0.0, min(1.0, (dbfs + 60.0) / 60.0))
        # the echo reaches the mic after the sink falls silent (device latency, the
        # room): while the guard still expects it, treat the assistant as audible
        tc.playing = playing or not echo_ok
        covered = False
        events = self.endpointer.feed(block)
        self._heard_ms += len(block) * 1000 / SAMPLE_RATE
        for event in events:
            if isinstance(event, SpeechStart):
                self._onset_ms = event.t_ms
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
        if self._onset_ms is not None:
            # the voice began before the endpointer was sure of it (and before the echo
            # check passed): the barge-in says how long ago, for the truncate
            voice_ms = self._heard_ms - self._onset_ms
            step.actions = [
                replace(a, voice_ms=voice_ms) if isinstance(a, BargeIn) else a for a in step.actions
            ]
        return step


__all__ = ["MicPipeline", "MicStep"]
