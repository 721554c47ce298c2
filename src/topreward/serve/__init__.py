"""The reward server for RL workers (`topreward serve`): streaming sessions and one-shot scoring over HTTP.

  * `service`: the sessions, limits and the one worker thread that runs the model (`RewardService`);
  * `server`: the HTTP server in front of it (`serve(scorer)`), its endpoints and status codes;
  * `client`: `RewardClient`, what an RL worker uses (plain urllib and numpy, no torch);
  * `ray`: the same service on Ray Serve replicas (`deploy`).
It imports the stream and the methods' registry; nothing here is imported by a lower layer.
"""

from topreward.serve.server import HTTPError, RewardService, ServeLimits, check_port, route, serve

__all__ = ["HTTPError", "RewardService", "ServeLimits", "check_port", "route", "serve"]
