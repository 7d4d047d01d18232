"""What the stack graph is and how waves run: graph, wiring, runner, journal, preview, offline plan."""
