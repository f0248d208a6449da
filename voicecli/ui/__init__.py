"""The Textual terminal UI: a thin layer over :mod:`voicecli.engine`.

Widgets receive engine notifications as Textual messages (:mod:`voicecli.ui.messages`)
and call engine actions; no protocol or audio logic lives here.
"""
