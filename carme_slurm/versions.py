"""Which SLURM the hub talks to, and what Carme's queries gain from a newer one (pure).

`parse_version` reads `squeue --version` ("slurm 22.05.8", "slurm 25.05.0-0rc1", "slurm-wlm
23.11.4"); `query_env` is what the view's JSON queries add for that version:

- 25.05 and later serialise `--json` as compact text with `SLURM_JSON=compact` (the release's
  squeue.1/sinfo.1, `src/interfaces/serializer.h` ENV_CONFIG_JSON at tag slurm-25-05-0-1, commit
  b523b3deb8): the same document, without the pretty printer's indentation (a third or more of
  the bytes of a big squeue answer, piped to the hub and parsed every interval).

What newer releases offer and Carme does NOT use, and why (read from SchedMD's sources, tags
slurm-23-02-0-1 .. slurm-25-05-0-1, src/squeue/squeue.c):
- filters with `--json`: from 23.02 only `-j` and `-u` reach slurmctld (slurm_load_job,
  slurm_load_job_user); the watch needs every job (other users' pending jobs make a job's place in
  the queue, the cockpit counts them), so a filtered query would mean more calls, not fewer;
- `--only-job-state` (24.05, REQUEST_JOB_STATE: job id and state only): the view needs nodes,
  GPUs, times and reasons of each job;
- "no change" answers (slurm_load_jobs with the last update time): only inside one long-running
  `squeue --iterate` process; the watch runs one short squeue per interval (and on a spawn's kick).
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^slurm(?:-wlm)?\s+(\d+)\.(\d+)\.(\d+)", re.IGNORECASE)

COMPACT_JSON_SINCE = (25, 5)


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, micro) from `squeue --version`; ValueError if the text is not a SLURM version."""
    m = _VERSION.match((text or "").strip())
    if not m:
        raise ValueError(f"not a SLURM version line: {text.strip()[:80]!r}")
    return int(m[1]), int(m[2]), int(m[3])


def query_env(version: tuple[int, int, int] | None) -> dict[str, str]:
    """What the view's `--json` queries add to their environment for `version` (None: not known)."""
    if version is not None and version[:2] >= COMPACT_JSON_SINCE:
        return {"SLURM_JSON": "compact"}
    return {}


def version_words(version: tuple[int, int, int] | None) -> str:
    return "not known" if version is None else ".".join(f"{v:02d}" if i == 1 else str(v) for i, v in enumerate(version))
