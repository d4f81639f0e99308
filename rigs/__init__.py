"""Rig files (one TOML file per rig) shipped with the agent; `--rig sim` names sim.toml."""
