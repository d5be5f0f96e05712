"""The synthetic payment stream: a realistic population with labelled fraud patterns.

Just another source (:class:`~riskstream.synthetic.generator.GeneratorSource`, the
``generator:`` URI), plus the JSON-lines writer behind ``riskstream generate``.
"""
