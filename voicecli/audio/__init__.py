"""Audio for voicecli: pure signal code (``dsp``, ``wav``, ``vad``, ``echo``) and the
PortAudio edges (``devices``, ``sources``, ``sinks``).

Importing this package loads nothing heavy: PortAudio (``sounddevice``) is only
imported by the modules that need a device, so ``ask`` with WAV files, the tests and
the local server run without it.
"""

from __future__ import annotations
