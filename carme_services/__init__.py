"""Carme's hub-managed services: each one small tornado app in one module, run by the hub.

Each service is started by JupyterHub (`c.JupyterHub.services`, wired in jupyterhub_config.py)
as `python -m carme_services.<name>`, talks to the hub's REST API with its own token and scopes,
serves a JSON API under `/services/<name>/api/` behind `HubOAuthenticated` handlers and custom
scopes (`custom:<name>:read`), and reaches SLURM only through `carme_spawner.slurm`.

- `reconcile`: finds Carme's SLURM jobs that no hub server claims (orphans) and reports or
  cancels them; reports ready servers whose job SLURM no longer lists.
"""
