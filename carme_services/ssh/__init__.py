"""carme-ssh: SSH, SFTP/scp and port forwarding into the users' running jobs (asyncssh).

    python -m carme_services.ssh.service [--ssh-port=2222] [--help-all]

`alice@gateway` reaches alice's default server, `alice+exp2@gateway` her named server exp2. A
login is a hub API token as the password (checked with the hub every time) or a public key from
the SSH keys page; the role must be one SSH is enabled for; wrong tokens count in a cool-down.
Every session is a step of the server's SLURM job (`srun --jobid --overlap`) as the user, in the
job's container with its binds; forwards (`ssh -L`) connect from inside the job as the user, and
only to the user's own listening ports on the job's node. See `enter`, `gateway`, `relay`.

Imports nothing heavy at package level: the nodes run `python -m carme_services.ssh.relay`.
"""


def hub_service(settings):
    from .service import hub_service as wiring

    return wiring(settings)


__all__ = ["hub_service"]
