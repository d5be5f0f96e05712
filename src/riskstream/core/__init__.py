"""The bottom layer: tiers and bucket arithmetic, times, keys, RawBatch, Case, Checkpoint, stats.

Every other package imports down into this one; it imports none of them.
"""
