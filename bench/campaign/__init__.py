"""Fault campaigns, written as an outside tester would: harnesses that attack the agent."""
