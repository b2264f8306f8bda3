"""Entry points that nnictl runs as ``trialCommand`` (thin: parse options, call the library, report)."""
