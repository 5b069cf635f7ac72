"""Synthetic internet: in-process responders, routed by host and path. Never the host network."""

from emulator.responders.base import HttpRequest, HttpResponse, Responder
from emulator.responders.router import NetworkRouter, build_responder

__all__ = ["HttpRequest", "HttpResponse", "NetworkRouter", "Responder", "build_responder"]
