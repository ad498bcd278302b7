"""canonicalize: exporter idioms rewritten to one canonical form; one rewrite module per idiom,
run by canonicalize.py."""
