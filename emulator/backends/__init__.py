"""Engine backends. :mod:`.base` holds the engine-neutral interface and types; only
:mod:`.speakeasy` talks to an emulator, and it is imported only by commands that emulate."""
