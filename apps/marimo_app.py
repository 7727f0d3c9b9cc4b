"""Lobby: a chat for everyone viewing this marimo app.

Serve it with ``marimo run apps/marimo_app.py`` and open the page in two browsers (or two tabs):
each viewer gets a session of their own, and every session attaches to the one gateway this
machine shares (``Gateway.shared()``), so the viewers chat with each other and see who is here.
See docs/hosts.md for a gateway your deployment runs instead.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import secrets

    import marimo as mo

    from rtwidgets.gateway import Gateway
    from rtwidgets.models import Connection
    from rtwidgets.widgets import Chat, PresenceBar

    return Chat, Connection, Gateway, PresenceBar, mo, secrets


@app.cell
def _(Chat, Connection, Gateway, PresenceBar, mo, secrets):
    # The gateway every session of this host shares (found, or started detached, on first use).
    gw = Gateway.shared()
    # Each viewer's session picks an anonymous name; a stable identity per browser is issue 15.
    me = f"viewer-{secrets.token_hex(3)}"
    conn = Connection(gw.url, token=gw.token(me, ["app:*"])).connect(wait=True)
    chat_widget = Chat(conn, "app:lobby")
    chat = mo.ui.anywidget(chat_widget)
    bar = mo.ui.anywidget(PresenceBar(chat_widget.model))
    return bar, chat, me


@app.cell
def _(bar, chat, me, mo):
    mo.vstack(
        [
            mo.Html(f'<p class="app-me">You are <b>{me}</b>. Everyone viewing this app is below.</p>'),
            bar,
            chat,
        ]
    )
    return


if __name__ == "__main__":
    app.run()
