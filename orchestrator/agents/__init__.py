"""Sub-agent backends. The only package that imports anthropic."""
