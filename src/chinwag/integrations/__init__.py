"""Integrations of chinwag into other programs.

- ``twisted_client``: a non-blocking client of the NPC API for Twisted programs (no Evennia).
- ``evennia``: ``ChinwagNPC`` and ``CmdChinwagTalk`` for Evennia games (``chinwag[evennia]``).

Nothing here is imported by ``import chinwag``: each module needs its own extra.
"""
