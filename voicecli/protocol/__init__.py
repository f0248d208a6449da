"""The Realtime protocol core, sans-I/O.

:class:`~voicecli.protocol.client_events.ClientEvents` builds every event voicecli sends;
:class:`~voicecli.protocol.conversation.Conversation` folds every server event into the
conversation state and returns :mod:`~voicecli.protocol.notifications` describing what
changed. Nothing here touches a socket, a thread, a device or a widget.
"""
