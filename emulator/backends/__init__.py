"""Engine backends. Only ``speakeasy_backend`` talks to an emulator; ``saved_trace`` replays a trace."""
