"""What SLURM itself says, read independently of Carme's own parsers (scontrol/squeue text)."""

from __future__ import annotations

import subprocess

#: the dev cluster's GPUs (dev/cluster.sh NODE_GPUS), by node and type, in device order
NODE_GPUS = {"carme-n1": {"a100": 4}, "carme-n2": {"a100": 2, "1g.10gb": 4}}


def node_gpus(node: str) -> int:
    return sum(NODE_GPUS[node].values())


def job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict ({} when SLURM no longer knows the job)."""
    r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True)
    if r.returncode != 0:
        return {}
    fields = {}
    for token in r.stdout.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def in_queue(job_id: str) -> bool:
    """True while squeue lists the job as pending/running/completing (its default view)."""
    r = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%i"], capture_output=True, text=True)
    return r.stdout.strip() == str(job_id)


def batch_script(job_id: str) -> str:
    r = subprocess.run(["scontrol", "write", "batch_script", str(job_id), "-"], capture_output=True, text=True, check=True)
    return r.stdout


def cancel_all(prefix: str) -> None:
    try:
        ids = carme_jobs(prefix)
    except subprocess.CalledProcessError:  # clean-up goes on while SLURM does not answer
        return
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def carme_jobs(prefix: str) -> list[str]:
    """Ids of the queued jobs whose name starts with `prefix`."""
    r = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines() if len(line.split()) == 2 and line.split()[1].startswith(prefix)]


def reservation(name: str) -> dict[str, str]:
    """`scontrol -o show reservation NAME` as a dict ({} when SLURM has no such reservation)."""
    r = subprocess.run(["scontrol", "-o", "show", "reservation", name], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("ReservationName="):
        return {}
    return dict(token.partition("=")[::2] for token in r.stdout.split() if "=" in token)


def reservations() -> list[str]:
    """The names of every reservation SLURM has."""
    r = subprocess.run(["scontrol", "-o", "show", "reservation"], capture_output=True, text=True, check=True)
    return [line.split()[0].partition("=")[2] for line in r.stdout.splitlines() if line.startswith("ReservationName=")]


def delete_reservations(prefix: str) -> None:
    for name in reservations():
        if name.startswith(prefix):
            subprocess.run(["scontrol", "delete", f"ReservationName={name}"], check=False, capture_output=True)
