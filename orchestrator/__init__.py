"""orchestrate: carry a markdown implementation plan to completion with coding sub-agents."""

__version__ = "0.1.0"
