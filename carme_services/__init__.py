"""Carme's hub-managed services: each one small Application on the shared base, run by the hub.

- `base`: `CarmeService` (settings as traitlets, logging, listen, periodic tasks, /metrics),
  `HubClient` (the hub's REST API and its SLURM view), `CarmeServiceHandler` (HubOAuth, scopes
  through JupyterHub's check_scopes, hub-styled pages with XSRF); state for services that keep
  it is `carme_core.db`.
- `wiring`: the pure pieces of each service's `hub_service(settings)`; `jupyterhub_config.py`
  loops over the enabled services (entry point group `carme.services`) and merges what they declare.
- `reconcile`: finds Carme's SLURM jobs that no hub server claims (orphans), reports or cancels them.
- `catalog`: the container catalog's REST API and page; power users add their own images.

Services read SLURM only through the hub's view (`GET /hub/api/carme/slurm/...`); a service that
changes SLURM runs its command (`carme_slurm.commands`) and waits for the next snapshot.
"""
