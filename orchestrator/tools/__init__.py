"""What a sub-agent (and verification) may do: a workspace jail and a shell with limits."""
