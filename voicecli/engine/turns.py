"""Turn-taking, sans-I/O: what to do with each mic block, and when a user turn ends.

The engine feeds the controller mic blocks (already sized, PCM16 bytes), the local
endpointer's speech start/end, the push-to-talk key and the playback state; the
controller answers with :data:`Action` values that the engine turns into client
events. No sockets, no clocks, no audio devices: every rule here is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicecli.engine.status import TurnMode
from voicecli.pcm import BYTES_PER_MS

EchoMode = Literal["guard", "half-duplex", "off"]


@dataclass(frozen=True, slots=True)
class Append:
    """Send this audio as ``input_audio_buffer.append``."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Send ``input_audio_buffer.commit``; ``respond`` adds ``response.create``."""

    respond: bool = True


@dataclass(frozen=True, slots=True)
class Clear:
    """Send ``input_audio_buffer.clear`` (a turn too short to commit, or discarded)."""


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The user started speaking: stop playback, cancel and truncate (see bargein.py)."""

    voice_ms: float = 0.0
    """How long the voice had been going when this was decided (mic time from its
    onset): the truncate reports what was played when the voice began."""


Action = Append | Commit | Clear | BargeIn


class TurnController:
    """Decides, block by block, what reaches the server and when a turn ends.

    * ``server-vad`` / ``semantic-vad``: stream continuously; while the assistant is
      audible and the echo guard does not clear the mic, send silence of the same
      length instead (the server's clock keeps running, its VAD hears no echo).
    * ``local-vad``: nothing is sent until the endpointer hears speech; then its
      pre-roll and every block until the end of speech; then commit + response.
      Speech that starts while the echo guard rejects the mic is *held* (up to
      ``max_held_ms``), not dropped: if a later block of the same speech passes the
      guard (the user got louder, or the assistant's echo died away), the turn opens
      with everything held; if the speech ends first, it was echo and is forgotten.
    * ``push-to-talk``: blocks are sent only between two presses of the key (or the
      key and :meth:`commit`).

    A turn holding less than ``min_turn_ms`` of audio is cleared, never committed,
    so the server never answers ``input_audio_buffer_commit_empty`` because of us.
    While muted nothing is sent at all.
    """

    def __init__(
        self,
        mode: TurnMode = "local-vad",
        *,
        min_turn_ms: float = 100.0,
        echo_mode: EchoMode = "guard",
        max_turns: int | None = None,
        max_held_ms: float = 3000.0,
    ) -> None:
        self._mode: TurnMode = mode
        self.max_turns = max_turns
        """Commit at most this many turns (``voicecli ask --mic``: one); later speech
        still interrupts the assistant but opens no turn."""
        self.turns_committed = 0
        self.min_turn_ms = min_turn_ms
        self.echo_mode: EchoMode = echo_mode
        self.muted = False
        self.playing = False
        """The assistant is audible right now (set by the engine from the sink)."""
        self.in_turn = False
        """local-vad / push-to-talk: the user's turn is open and audio is being sent."""
        self.buffered_ms = 0.0
        """Audio appended since the last commit or clear (ours or the server's)."""
        self.max_held_ms = max_held_ms
        self._held: list[bytes] | None = None  # speech held back as possible echo
        self._held_bytes = 0

    @property
    def mode(self) -> TurnMode:
        return self._mode

    @property
    def client_decides(self) -> bool:
        """True in the modes where turn detection on the server is null."""
        return self._mode in ("local-vad", "push-to-talk")

    def set_mode(self, mode: TurnMode) -> list[Action]:
        """Switch modes; a half-sent turn is discarded (cleared) rather than committed."""
        actions: list[Action] = []
        if mode != self._mode and (self.in_turn or self.buffered_ms > 0):
            actions = self._close_turn(commit=False)
        self._held = None
        self._mode = mode
        return actions

    def set_muted(self, muted: bool) -> list[Action]:
        """Mute or unmute; muting mid-turn drops what was said (nothing more is sent)."""
        self.muted = muted
        if muted:
            self._held = None
        if muted and self.in_turn:
            return self._close_turn(commit=False)
        return []

    # -- inputs --------------------------------------------------------------------

    def block(self, pcm: bytes, *, echo_ok: bool = True, voiced: bool = True) -> list[Action]:
        """One mic block. ``echo_ok``: the echo guard says the mic is louder than the
        playback explains (only consulted while :attr:`playing`). ``voiced``: the block
        is above the endpointer's loudness gate; held speech is released only by a block
        that is both (a quiet hangover block after the echo died away proves nothing)."""
        if self.muted:
            return []
        if self._mode in ("server-vad", "semantic-vad"):
            if self._gated(echo_ok):
                return [self._append(bytes(len(pcm)))]
            return [self._append(pcm)]
        if self.in_turn:
            return [self._append(pcm)]
        if self._held is not None and self._mode == "local-vad":
            self._hold(pcm)
            if not voiced or self._gated(echo_ok):
                return []
            # the same speech, now clearly the user's: the turn starts at its onset
            held, self._held = b"".join(self._held), None
            return self._open_turn(held)
        return []

    def _hold(self, pcm: bytes) -> None:
        assert self._held is not None
        self._held.append(pcm)
        self._held_bytes += len(pcm)
        limit = self.max_held_ms * BYTES_PER_MS
        while self._held_bytes > limit and len(self._held) > 1:
            self._held_bytes -= len(self._held.pop(0))

    def speech_start(self, preroll: bytes, *, echo_ok: bool = True) -> list[Action]:
        """The local endpointer heard speech begin; ``preroll`` is the audio from
        ``prefix_ms`` before the onset up to and including the current block."""
        if self._mode != "local-vad" or self.muted or self.in_turn:
            return []
        if self._gated(echo_ok):
            # the assistant's own voice through the speakers, or the user's: later
            # blocks decide (see the class docstring)
            self._held, self._held_bytes = [], 0
            self._hold(preroll)
            return []
        return self._open_turn(preroll)

    def _open_turn(self, audio: bytes) -> list[Action]:
        if self._exhausted:
            return [BargeIn()]
        self.in_turn = True
        actions: list[Action] = [BargeIn()]
        if audio:
            actions.append(self._append(audio))
        return actions

    def speech_end(self) -> list[Action]:
        """The local endpointer heard ``silence_ms`` of silence after speech."""
        self._held = None  # speech that never passed the guard: echo
        if self._mode != "local-vad" or not self.in_turn:
            return []
        return self._close_turn(commit=True)

    def push_to_talk(self) -> list[Action]:
        """The push-to-talk key: opens a turn, or ends the open one.

        In the other modes it does the natural thing: local-vad ends a turn in
        progress; server modes commit what the server has buffered.
        """
        if self._mode == "push-to-talk":
            if self.in_turn:
                return self._close_turn(commit=True)
            if self.muted:
                return []
            if not self._exhausted:
                self.in_turn = True
            return [BargeIn()]
        return self.commit()

    def commit(self) -> list[Action]:
        """Commit now (Enter): whatever the mode, end the current turn and respond."""
        if self.in_turn or self.buffered_ms > 0:
            return self._close_turn(commit=True)
        return []

    def clear(self) -> list[Action]:
        """Discard the current turn and the server's input buffer."""
        self.in_turn = False
        self._held = None
        self.buffered_ms = 0.0
        return [Clear()]

    def server_committed(self) -> None:
        """The server committed the buffer (server VAD, or our own commit echoed)."""
        if not self.in_turn:
            self.buffered_ms = 0.0

    def server_cleared(self) -> None:
        if not self.in_turn:
            self.buffered_ms = 0.0

    # -- internals ------------------------------------------------------------------

    @property
    def _exhausted(self) -> bool:
        return self.max_turns is not None and self.turns_committed >= self.max_turns

    def _gated(self, echo_ok: bool) -> bool:
        if not self.playing or self.echo_mode == "off":
            return False
        return self.echo_mode == "half-duplex" or not echo_ok

    def _append(self, pcm: bytes) -> Append:
        self.buffered_ms += len(pcm) / BYTES_PER_MS
        return Append(pcm)

    def _close_turn(self, *, commit: bool) -> list[Action]:
        self.in_turn = False
        self._held = None
        enough = self.buffered_ms >= self.min_turn_ms
        self.buffered_ms = 0.0
        if commit and enough:
            self.turns_committed += 1
            # In server modes the server answers by itself only after its own VAD commit;
            # a manual commit needs an explicit response.create.
            return [Commit(respond=True)]
        return [Clear()]
