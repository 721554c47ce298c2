"""The `topreward` command line. One module per command group, each command's parser beside its handler:

  * `score`: score, demo, make-tiny-model, list;  `data`: annotate, weights, rank, sim;
  * `evaluate`: bench, tokens, calibrate;  `run`: serve, train;
  * `flags`: what several commands share (formatter, common flags, flags from config dataclasses);
  * `checks`: what runs before a model is loaded;  `main`: the parser and `main(argv) -> int`.
The top layer: it may import any module of the package, and none imports it.
"""

from topreward.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
