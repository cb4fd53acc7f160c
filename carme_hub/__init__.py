"""The hub's configuration: `carme_hub.config` is Carme's JupyterHub config file (`carme hub`, jupyterhub -f).

It sits above every other package (it wires the authenticator, the spawner, the SLURM view and
the services into JupyterHub), so nothing in Carme imports it.
"""
