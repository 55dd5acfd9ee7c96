"""csautomation: rule-based process automation for Customer Success teams."""

__version__ = "0.1.0"
