"""Detection content generated from a replay: YARA rules per stage, Sigma rules, Suricata rules."""
