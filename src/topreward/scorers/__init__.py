"""The methods: one module each, the same shape (a config dataclass and a `Scorer` subclass), registered by
name in `registry` (`load_scorer`, `list_scorers`, `ScorerSpec`); `base` holds the `Scorer` contract and
`score()` written once; `conventions` the peers' pipelines reproduced exactly; `answers` the parsing of
generated answers.
It imports the engine (`topreward.backends`), `stream`, `task_text`, `provenance` and the basics; the uses
(annotate, bench, serve, rl, train) and the command line import it, never the other way.
"""
