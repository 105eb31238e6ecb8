"""Reading a network's graph: tracing it to MindIR and finding its channel groups."""
