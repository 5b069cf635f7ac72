"""chainreplay: sandboxed replay of multi-stage Windows attack chains."""

__version__ = "0.1.0"
