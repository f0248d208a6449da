"""libasound prints its errors straight to file descriptor 2 ("ALSA lib pcm.c:…:
underrun occurred"), which scribbled over the terminal UI under load. Once voicecli has
loaded PortAudio, ALSA prints nothing."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

from tests.conftest import require

PROBE = """
import ctypes, ctypes.util, sys
if sys.argv[1] == "voicecli":
    from voicecli.audio.devices import sounddevice_module
    sounddevice_module()
lib = ctypes.CDLL(ctypes.util.find_library("asound"))
pcm = ctypes.c_void_p()
lib.snd_pcm_open(ctypes.byref(pcm), b"no_such_pcm_voicecli", 0, 0)  # an ALSA error
"""


def test_alsa_errors_do_not_reach_the_terminal() -> None:
    require(
        "libasound", ctypes.util.find_library("asound") is not None, "apt-get install libasound2"
    )
    plain = subprocess.run([sys.executable, "-c", PROBE, "plain"], capture_output=True, text=True)
    assert "ALSA lib" in plain.stderr  # what the probe provokes, without voicecli
    ours = subprocess.run([sys.executable, "-c", PROBE, "voicecli"], capture_output=True, text=True)
    assert ours.returncode == 0 and ours.stderr == ""
