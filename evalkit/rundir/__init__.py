"""A run directory: `episodes.sqlite` (the `EpisodeStore`), `manifest.json` (the `Manifest`), the writer's lock
(`RunLock`), videos and saved actions. The runner writes it, the reporter reads it (`load_run`), and both go
through these modules only.
"""
