"""Behaviour analysis over typed events: stages and provenance, the stage graph, ATT&CK."""
