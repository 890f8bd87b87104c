"""Running flows: the pure interpreter, the engine around it, stores and clocks."""
