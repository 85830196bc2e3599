"""Plan files: markdown -> Plan (parser) and one-byte ticks (writer). The only markdown_it user."""

from orchestrator.planfile.parser import parse_bytes, parse_plan
from orchestrator.planfile.writer import set_box, with_box

__all__ = ["parse_bytes", "parse_plan", "set_box", "with_box"]
