"""Device lookup and the PortAudio-missing message, against a fake device list."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from voicecli.audio import devices
from voicecli.audio.devices import DeviceInfo, DeviceNotFound, PortAudioMissing, find_device


def dev(index: int, name: str, ins: int = 2, outs: int = 2, **kw: Any) -> DeviceInfo:
    return DeviceInfo(
        index,
        name,
        "ALSA",
        ins,
        outs,
        48_000.0,
        **{"is_default_input": False, "is_default_output": False, **kw},
    )


FAKE = [
    dev(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)"),
    dev(1, "USB Headset: Audio (hw:1,0)"),
    dev(2, "USB Webcam: Mic (hw:2,0)", outs=0),
    dev(3, "pulse", is_default_input=True, is_default_output=True),
    dev(4, "pulse monitor", outs=0),
]


@pytest.fixture
def fake_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "list_devices", lambda: list(FAKE))


def test_portaudio_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_portaudio(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(devices, "_sd", None)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(PortAudioMissing) as info:
        devices.list_devices()
    message = str(info.value)
    assert "\n" not in message
    for hint in ("libportaudio2", "Fedora", "portaudio", "brew install portaudio"):
        assert hint in message
    assert isinstance(info.value, RuntimeError)
    assert info.value.detail == "PortAudio library not found"
    with pytest.raises(PortAudioMissing):
        find_device("pulse", kind="output")


def test_default_is_none(fake_list: None) -> None:
    assert find_device(None, kind="input") is None
    assert find_device("  ", kind="output") is None


def test_by_index_int_or_digits(fake_list: None) -> None:
    assert find_device(1, kind="output") == 1
    assert find_device("2", kind="input") == 2
    with pytest.raises(DeviceNotFound, match="no output device #9; output devices: 0: HDA"):
        find_device(9, kind="output")
    with pytest.raises(DeviceNotFound, match=r"#2 \(USB Webcam: Mic \(hw:2,0\)\) has no output"):
        find_device(2, kind="output")


def test_by_case_insensitive_substring(fake_list: None) -> None:
    assert find_device("headset", kind="output") == 1
    assert find_device("WEBCAM", kind="input") == 2
    assert find_device("alc257", kind="input") == 0


def test_exact_name_beats_substrings(fake_list: None) -> None:
    assert find_device("Pulse", kind="input") == 3  # not ambiguous with "pulse monitor"


def test_ambiguous_lists_the_matches(fake_list: None) -> None:
    with pytest.raises(DeviceNotFound) as info:
        find_device("usb", kind="input")
    text = str(info.value)
    assert "matches 2 input devices" in text
    assert "1: USB Headset" in text and "2: USB Webcam" in text
    assert find_device("usb", kind="output") == 1  # the webcam has no output


def test_no_match_lists_candidates(fake_list: None) -> None:
    with pytest.raises(DeviceNotFound) as info:
        find_device("bluetooth", kind="output")
    text = str(info.value)
    assert "no output device matches 'bluetooth'" in text
    assert "3: pulse" in text and "Webcam" not in text  # only devices with outputs
    assert isinstance(info.value, LookupError)


def test_format_device_table() -> None:
    table = devices.format_device_table(FAKE[2:4])
    lines = table.splitlines()
    assert lines[0].split() == ["#", "in", "out", "rate", "default", "name"]
    assert lines[1].split()[:4] == ["2", "2", "0", "48000"]
    assert lines[1].endswith("USB Webcam: Mic (hw:2,0) (ALSA)")
    assert "input,output" in lines[2] and lines[2].endswith("pulse (ALSA)")
    assert devices.format_device_table([]) == "no audio devices found\n"


class FakeSD:
    """Just enough of sounddevice for list_devices and choose_rate."""

    class _Default:
        device = (1, -1)

    default = _Default()

    class PortAudioError(Exception):
        pass

    def __init__(self, accepts_24k: bool, no_default: bool = False) -> None:
        self.accepts_24k = accepts_24k
        self.no_default = no_default  # what PortAudio says with no default device

    def query_devices(self, device: int | None = None, kind: str | None = None) -> Any:
        table = [
            {
                "name": "a",
                "index": 0,
                "hostapi": 0,
                "max_input_channels": 0,
                "max_output_channels": 2,
                "default_samplerate": 44_100.0,
            },
            {
                "name": "b",
                "index": 1,
                "hostapi": 1,
                "max_input_channels": 1,
                "max_output_channels": 0,
                "default_samplerate": 16_000.0,
            },
        ]
        if device is None and kind is None:
            return table
        if self.no_default and device is None:
            raise self.PortAudioError("Error querying device -1")
        if device is None:
            if kind == "output":
                return table[0]
            raise ValueError("no default")
        return table[device]

    def query_hostapis(self) -> Any:
        return ({"name": "ALSA"}, {"name": "JACK"})

    def check_output_settings(self, **kw: Any) -> None:
        if self.no_default and kw["device"] is None:
            raise self.PortAudioError("Error querying device -1")
        if not self.accepts_24k:
            raise ValueError("Invalid sample rate")

    check_input_settings = check_output_settings


def test_list_devices_reads_sounddevice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_sd", FakeSD(True))
    found = devices.list_devices()
    assert [(d.index, d.name, d.hostapi) for d in found] == [(0, "a", "ALSA"), (1, "b", "JACK")]
    assert found[1].is_default_input and not found[1].is_default_output
    assert found[0].is_default_output  # -1 resolved through query_devices(kind=...)


def test_choose_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_sd", FakeSD(True))
    assert devices.choose_rate(0, "output") == 24_000
    monkeypatch.setattr(devices, "_sd", FakeSD(False))
    assert devices.choose_rate(0, "output") == 44_100
    assert devices.choose_rate(1, "input") == 16_000


@pytest.mark.parametrize("kind", ["input", "output"])
def test_choose_rate_without_a_default_device_is_one_audio_device_error(
    monkeypatch: pytest.MonkeyPatch, kind: devices.Kind
) -> None:
    fake = FakeSD(True, no_default=True)
    monkeypatch.setattr(devices, "_sd", fake)
    with pytest.raises(devices.AudioDeviceError) as info:
        devices.choose_rate(None, kind)
    assert str(info.value) == f"no usable default {kind} device (Error querying device -1)"
    assert not isinstance(info.value, fake.PortAudioError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_choose_rate_of_a_vanished_device_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_sd", FakeSD(False))
    with pytest.raises(devices.AudioDeviceError, match=r"^output device 7 cannot be queried"):
        devices.choose_rate(7, "output")  # the fake's table has two devices
