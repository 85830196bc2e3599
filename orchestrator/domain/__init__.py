"""Pure models: no I/O, no markdown, no git, no anthropic, no rich."""
