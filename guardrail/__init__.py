"""Japanese LLM guardrail service."""

__version__ = "0.1.0"
