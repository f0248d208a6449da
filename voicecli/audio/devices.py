"""Audio devices through PortAudio (``sounddevice``), imported lazily.

``import sounddevice`` fails with an ``OSError`` when the PortAudio shared library is
missing (the Linux wheel does not bundle it); :func:`sounddevice_module` turns that into
:class:`PortAudioMissing`, whose message says what to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

Kind = Literal["input", "output"]
PREFERRED_RATE = 24_000

INSTALL_HINT = (
    "PortAudio is not installed: install it (Debian/Ubuntu: apt install libportaudio2; "
    "Fedora: dnf install portaudio; macOS: brew install portaudio)"
)


class PortAudioMissing(RuntimeError):
    """The PortAudio library cannot be loaded; the message says what to install."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(INSTALL_HINT)
        self.detail = detail


class DeviceNotFound(LookupError):
    """No device (or more than one) matches the configured one; lists the candidates."""


class AudioDeviceError(OSError):
    """A device could not be opened or stopped working."""


class AudioDeviceLost(AudioDeviceError):
    """A stream's device disappeared (unplugged, server gone) while in use."""


_sd: ModuleType | None = None


def sounddevice_module() -> ModuleType:
    """The ``sounddevice`` module, or :class:`PortAudioMissing`."""
    global _sd
    if _sd is None:
        _quiet_alsa()  # before PortAudio starts: it probes every ALSA device
        try:
            import sounddevice
        except OSError as exc:
            raise PortAudioMissing(str(exc)) from None
        _sd = sounddevice
    return _sd


_ALSA_ERROR_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_alsa_handler: Any = None  # kept alive for as long as libasound may call it


def _quiet_alsa() -> None:
    """libasound prints its errors ("ALSA lib pcm.c:…: underrun occurred") straight to
    file descriptor 2, over the terminal UI. Replace its printer with one that prints
    nothing: the sink counts underruns itself and the status bar shows them."""
    global _alsa_handler
    if _alsa_handler is not None:
        return
    name = ctypes.util.find_library("asound")
    if name is None:
        return  # not ALSA (macOS, Windows): nothing prints
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return
    _alsa_handler = _ALSA_ERROR_HANDLER(lambda *_: None)
    lib.snd_lib_error_set_handler(_alsa_handler)


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device; ``hostapi`` is the host API's name (ALSA, CoreAudio...)."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool

    def supports(self, kind: Kind) -> bool:
        """Whether the device has channels of that kind."""
        return (self.max_input_channels if kind == "input" else self.max_output_channels) > 0


def _default_indices(sd: Any) -> tuple[int, int]:
    """PortAudio's default input and output indices (-1: none)."""
    found: list[int] = []
    for kind, value in zip(("input", "output"), sd.default.device, strict=False):
        if isinstance(value, int) and value >= 0:
            found.append(value)
            continue
        try:
            found.append(int(sd.query_devices(kind=kind)["index"]))
        except Exception:  # no default device of that kind
            found.append(-1)
    return found[0], found[1]


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio reports, with default marks."""
    sd = sounddevice_module()
    devices = sd.query_devices()
    hostapis = sd.query_hostapis()
    default_in, default_out = _default_indices(sd)
    out: list[DeviceInfo] = []
    for index, dev in enumerate(devices):
        api = int(dev.get("hostapi", -1))
        api_name = str(hostapis[api]["name"]) if 0 <= api < len(hostapis) else ""
        out.append(
            DeviceInfo(
                index=int(dev.get("index", index)),
                name=str(dev["name"]),
                hostapi=api_name,
                max_input_channels=int(dev["max_input_channels"]),
                max_output_channels=int(dev["max_output_channels"]),
                default_samplerate=float(dev["default_samplerate"]),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return out


def _candidates(devices: Sequence[DeviceInfo], kind: Kind) -> str:
    names = [f"{d.index}: {d.name}" for d in devices if d.supports(kind)]
    return "; ".join(names) if names else "none"


def find_device(spec: int | str | None, kind: Kind) -> int | None:
    """Resolve a configured device to a PortAudio index.

    ``None`` (or an empty string) is the system default and returns None. An int, or a
    string of digits, is an index; any other string is a case-insensitive substring of
    the name (an exact name wins over substrings). No match, several matches, or a device
    without ``kind`` channels raise :class:`DeviceNotFound` naming the candidates.
    Raises :class:`PortAudioMissing` when PortAudio is not installed.
    """
    devices = list_devices()
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        match = [d for d in devices if d.index == index]
        if not match:
            raise DeviceNotFound(
                f"no {kind} device #{index}; {kind} devices: {_candidates(devices, kind)}"
            )
        if not match[0].supports(kind):
            raise DeviceNotFound(
                f"device #{index} ({match[0].name}) has no {kind} channels; "
                f"{kind} devices: {_candidates(devices, kind)}"
            )
        return index
    wanted = spec.strip().lower()
    usable = [d for d in devices if d.supports(kind)]
    exact = [d for d in usable if d.name.lower() == wanted]
    found = exact or [d for d in usable if wanted in d.name.lower()]
    if len(found) == 1:
        return found[0].index
    if not found:
        raise DeviceNotFound(
            f"no {kind} device matches {spec!r}; {kind} devices: {_candidates(devices, kind)}"
        )
    listed = "; ".join(f"{d.index}: {d.name}" for d in found)
    raise DeviceNotFound(
        f"{spec!r} matches {len(found)} {kind} devices ({listed}): use an index or a longer name"
    )


def choose_rate(device: int | None, kind: Kind, channels: int = 1) -> int:
    """24 kHz when the device accepts it, else its default sample rate.

    A device PortAudio cannot query (``device`` None and no default device, or an index
    that went away) raises :class:`AudioDeviceError` with one line saying which."""
    sd = sounddevice_module()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, channels=channels, dtype="int16", samplerate=PREFERRED_RATE)
        return PREFERRED_RATE
    except Exception:  # PortAudioError or ValueError: not supported (or no such device)
        pass
    try:
        info = sd.query_devices(device, kind=kind)
        return int(info["default_samplerate"])
    except Exception as exc:  # PortAudioError ("Error querying device -1"), ValueError
        if device is None:
            raise AudioDeviceError(f"no usable default {kind} device ({exc})") from None
        raise AudioDeviceError(f"{kind} device {device} cannot be queried ({exc})") from None


def format_device_table(devices: Sequence[DeviceInfo]) -> str:
    """A plain table for ``voicecli devices``: index, channels, defaults, name."""
    if not devices:
        return "no audio devices found\n"
    rows = [("#", "in", "out", "rate", "default", "name")]
    for d in devices:
        defaults = (("input", d.is_default_input), ("output", d.is_default_output))
        marks = [m for m, on in defaults if on]
        name = f"{d.name} ({d.hostapi})" if d.hostapi else d.name
        rows.append(
            (
                str(d.index),
                str(d.max_input_channels),
                str(d.max_output_channels),
                f"{d.default_samplerate:.0f}",
                ",".join(marks),
                name,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


STREAM_END_TIMEOUT_S = 0.5
"""How long :func:`close_stream` waits for a callback to end its own stream."""


def close_stream(stream: Any, ended: threading.Event) -> None:
    """Close a callback stream whose callback was told to end it. Blocking: call it off
    the event loop.

    The callback ends the stream itself (it raises ``sounddevice.CallbackAbort`` once
    told to), and ``ended`` is set by the stream's finished callback. Only a callback
    that no longer runs (a stalled sound server) is aborted from outside. The reason:
    on Linux, PortAudio's ALSA ``Pa_AbortStream`` cancels the callback thread
    (``pthread_cancel``). If that thread is cancelled while it waits for the GIL, it
    can leave the GIL locked, and then the whole process hangs. That is the likely
    cause of a rare hang at exit seen here.
    """
    sd = sounddevice_module()
    with contextlib.suppress(Exception):  # a dead stream may not answer
        if stream.active:
            ended.wait(STREAM_END_TIMEOUT_S)
    with contextlib.suppress(sd.PortAudioError):
        stream.abort(ignore_errors=True)  # a no-op once the callback ended it
    with contextlib.suppress(sd.PortAudioError):
        stream.close(ignore_errors=True)
