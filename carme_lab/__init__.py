"""What runs in a session's JupyterLab (installed in the single-user environment, imports no hub code).

- `relay`: a Jupyter server extension, `GET <server>/carme/session` (the session's facts and the
  warnings due) and `POST <server>/carme/extend|keep-running`. It asks the hub's services
  (carme-sessions, carme-culler) at $CARME_SERVICES_URL with the session's own token
  ($JUPYTERHUB_API_TOKEN, which the hub gives the scopes those services declare as `server_scopes`);
  the browser page holds no token.
- `facts`: the pure part, the services' answers joined into what the page shows.
- `apps`: the image's web apps (TensorBoard, code-server, the site's own, from $CARME_INTERFACES)
  as jupyter-server-proxy servers on unix sockets in a 0700 directory, behind the server's login;
  `apps.tensorboard_socket` serves TensorBoard on a unix socket.
- `js/`: the JupyterLab 4 extension (status bar item, notifications with Extend and Keep running),
  built by dev/install.sh into a prebuilt extension (share/jupyter/labextensions/carme-lab).
"""

from __future__ import annotations


def _jupyter_server_extension_points():
    return [{"module": "carme_lab"}, {"module": "carme_lab.apps"}]


def _load_jupyter_server_extension(serverapp):
    from .relay import load

    load(serverapp)


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "carme-lab"}]
