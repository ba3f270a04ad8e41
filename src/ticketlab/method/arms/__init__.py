"""Built-in arms, one per file: the ticket and the controls that could refute it."""
