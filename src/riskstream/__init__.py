"""riskstream: a real-time risk engine for payment platforms.

Events in (Kafka, files, stdin, a generator), velocity metrics in time tiers,
rules written by analysts, cases out (files, webhooks, Kafka).
"""

__version__ = "0.1.0"
