"""The click CLI. Commands are thin: parse, call the orchestrator, render through the console."""
