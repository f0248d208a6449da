"""The TUI against a server that refuses the handshake with HTTP 400 (issue 13.4): it
says "HTTP 400" with the server's words, and stops after the first attempt."""

from __future__ import annotations

from pathlib import Path

from tests.ui.test_pilot import SIZE, make_app, until
from voicecli.server import RealtimeServer
from voicecli.ui.app import ConnectionBanner


async def test_http_400_is_said_with_its_body_and_not_retried(
    server: RealtimeServer, tmp_path: Path
) -> None:
    server.faults.refuse_handshake_with = 400
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.status_bar.status.connection == "failed")
        banner = app.main.query_one(ConnectionBanner)
        await until(pilot, lambda: "HTTP 400" in str(banner.render()))
        shown = str(banner.render())
        assert "OperationNotSupported" in shown, shown
        await pilot.pause(1.0)  # longer than the first backoff delays: no second attempt
        assert server.refused == 1
