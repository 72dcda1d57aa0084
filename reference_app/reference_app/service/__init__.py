"""The streaming transcription service (``python -m reference_app serve``).

Parts: :mod:`.pool` (connection pool of the store), :mod:`.workqueue`
(work orders), :mod:`.memory` (memory manager), :mod:`.audio_stream`
(incoming audio), :mod:`.server` (WebSocket protocol), :mod:`.app` (the
composition root) and :mod:`.client` (the bundled streaming client).
"""
