"""Input fuzzers, written apart from the code they attack: malformed codec frames,
TLV and EMV card answers, config and rig files (``inputs``), the targets that feed
them to the code and tell a documented error from an escape (``targets``)."""
