"""`evalkit serve`: any evalkit policy behind openpi's websocket protocol (`evalkit.wire`), batching requests
across connections."""
