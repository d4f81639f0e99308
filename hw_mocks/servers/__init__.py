"""Local servers that tests and benchmarks start: mosquitto, Xvfb, a throwaway PKI.

Production code never imports this package (an import-linter contract says so).
``started`` counts the servers started in this process, by kind (``mosquitto``,
``xvfb``); the test suite uses it to check that each test carries the marker of
the servers it starts.
"""

from __future__ import annotations

from collections import Counter

started: Counter[str] = Counter()
