"""Starting or joining Ray for the Ray engines (`annotate --engine ray`, `serve --engine ray`), quietly.

Ray prints a banner, its workers' log lines and Ray Data's progress bars and execution plans by default;
they drown `annotate`'s own progress bar. Here they are off unless our logging is at INFO (`topreward -v`).
A cluster is joined with `address` (`--ray-address`), else with the `RAY_ADDRESS` environment variable
(read by Ray itself), else a local Ray is started for the run.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def init_ray(address: str | None = None, *, ray: Any = None) -> Any:
    """Initialise Ray once (joining `address` or `RAY_ADDRESS` if given) and return the `ray` module.

    Args:
        address: a running cluster, e.g. "auto" (the cluster of this machine) or "ray://head:10001" (Ray
            Client); None: `RAY_ADDRESS`, else a new local Ray.
        ray: the imported module (callers import it with their own install hint).
    """
    if ray is None:
        import ray
    level = _ray_log_level()
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(level)
    if ray.is_initialized():
        if address:
            logger.info("Ray is already initialised in this process; address %s is not used", address)
        return ray
    ray.init(
        address=address or None,
        logging_level=level,
        log_to_driver=level
        <= logging.INFO,  # the workers' log lines; their errors still reach us as exceptions
    )
    return ray


def quiet_ray_data(progress_bars: bool) -> None:
    """Ray Data's progress bars and per-run execution summaries: shown only with `-v` or when asked."""
    from ray.data import DataContext

    verbose = logging.getLogger("topreward").isEnabledFor(logging.INFO)
    context = DataContext.get_current()
    context.enable_progress_bars = progress_bars or verbose
    for name in ("enable_operator_progress_bars", "print_on_execution_start"):  # not in every Ray version
        if hasattr(context, name):
            setattr(context, name, progress_bars or verbose)
    logging.getLogger("ray.data").setLevel(_ray_log_level())  # e.g. its "progress bars disabled" warning


def _ray_log_level() -> int:
    """INFO with `topreward -v`, else ERROR: Ray's warnings are about Ray (tokens, restarts), not the job."""
    return logging.INFO if logging.getLogger("topreward").isEnabledFor(logging.INFO) else logging.ERROR
