"""`raygen submit`: a run as a Ray job on a cluster (what `ray job submit -- raygen run CONFIG` does, made safe).

- The config is loaded and validated here first, with its ``--set`` overrides, and the resolved config
  travels in the job's runtime_env (``RAYGEN_CONFIG_YAML``): what runs is exactly what was checked.
- The working dir (the code) is shipped without secrets: ``.env`` files, tokens, keys, credentials,
  virtualenvs, datasets and git metadata are excluded whatever .gitignore says.
- ``HF_TOKEN`` reaches the job only when asked (``--pass-hf-token``), as a runtime_env variable; a local
  ``upload.env_file`` is never shipped (the path would not exist on the cluster).
- Ray 2.60 token authentication: with ``--ray-token-file``, or ``RAY_AUTH_MODE=token`` as Ray's own
  client wants, the token (that file, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
  ``~/.ray/auth_token``) is sent as an ``Authorization`` header; it never goes into the runtime_env.
- The dataset path (and folder upload targets) must be absolute: a job's working dir is a temporary copy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from raygen.config import ConfigError, RunConfig, load_config

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_ENV", "SECRET_EXCLUDES", "build_job", "config_from_env", "ray_auth_token", "submit"]

CONFIG_ENV = "RAYGEN_CONFIG_YAML"


def _anycase(word: str) -> str:
    """A gitwildmatch fragment matching ``word`` in any letter case (the patterns are case-sensitive)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _secret_names(word: str) -> list[str]:
    """Names ending in ``word`` (or its plural), with or without an extension: hf_token, Secrets.yaml, ...

    Not names that merely contain it (tokenizer.py, keypoints.json stay code and data).
    """
    w = _anycase(word)
    return [f"*{w}", f"*{w}.*", f"*{w}[sS]", f"*{w}[sS].*"]


# gitwildmatch patterns (Ray's runtime_env "excludes"; a pattern without "/" matches a name at any depth):
# never shipped to a cluster
SECRET_EXCLUDES = [
    ".env", ".env.*", "*.env", "*.env.*", ".envrc",
    *(p for w in ("token", "secret", "credential", "password", "passwd", "apikey", "api_key", "api-key")
      for p in _secret_names(w)),
    *(p for sep in "-_." for p in _secret_names(f"{sep}key")),
    "*.pem", "*.p12", "*.pfx", "*.keystore", "*.jks", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".ssh/", ".gnupg/", ".netrc", ".git-credentials", ".pypirc", ".npmrc", ".s3cfg", ".boto", ".htpasswd",
    ".huggingface/", ".cache/", ".aws/", ".azure/", ".kube/", ".docker/", ".config/gcloud/", "gcloud/", ".ray/",
]
BULK_EXCLUDES = [".git/", ".venv/", "venv/", "out/", "**/__pycache__/", "*.egg-info/", ".staging/", "**/*.mp4",
                 "**/*.mkv"]


def config_from_env(env: dict[str, str] | None = None) -> RunConfig | None:
    """The resolved config a submitted job carries, or None outside a submitted job."""
    text = (env if env is not None else os.environ).get(CONFIG_ENV)
    if not text:
        return None
    try:
        return RunConfig.model_validate(yaml.safe_load(text))
    except Exception as exc:
        raise ConfigError(f"${CONFIG_ENV}: not a valid raygen config ({exc})") from None


def ray_auth_token(token_file: str | None = None) -> str | None:
    """The Ray cluster's auth token, looked up where Ray 2.60 looks for it; None when there is none."""
    if token_file:
        try:
            return Path(token_file).expanduser().read_text().strip() or None
        except FileNotFoundError:
            raise ConfigError(f"--ray-token-file: {token_file} does not exist") from None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for candidate in (os.environ.get("RAY_AUTH_TOKEN_PATH"), "~/.ray/auth_token"):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser().read_text().strip() or None
    return None


def _check_cluster_paths(cfg: RunConfig) -> None:
    """A job runs inside Ray's temporary copy of the working dir: relative paths would land (and vanish) there."""
    if not Path(cfg.output.path).is_absolute():
        raise ConfigError(f"output.path: {cfg.output.path!r} is relative, and a job runs in a temporary copy of "
                          "the working dir that Ray deletes; give a path on the cluster, e.g. "
                          "--output /staging/pick_place")
    for field in ("repo", "metadata_repo"):
        target = getattr(cfg.upload, field)
        if target and target.startswith((".", "~")):
            raise ConfigError(f"upload.{field}: {target!r} is a relative folder; on a cluster give an absolute "
                              "path, a URL (s3://...) or a Hub repo id")


def build_job(config: RunConfig, *, working_dir: str | Path = ".", pass_hf_token: bool = False,
              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The entrypoint and runtime_env of the job for ``config`` (no network)."""
    cfg = config
    env: dict[str, str] = {}
    if pass_hf_token:
        from raygen.datasets.hub import resolve_token

        token = resolve_token(config.upload.env_file)
        if not token:
            raise ConfigError("--pass-hf-token: no Hugging Face token here (HF_TOKEN, upload.env_file or "
                              "`hf auth login`)")
        env["HF_TOKEN"] = token
    if cfg.upload.env_file:  # a local path; the token (if any) travels as HF_TOKEN instead
        cfg = cfg.model_copy(update={"upload": cfg.upload.model_copy(update={"env_file": None})})
    _check_cluster_paths(cfg)
    env[CONFIG_ENV] = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    env.update(extra_env or {})
    wd = Path(working_dir).resolve()
    if not wd.is_dir():
        raise ConfigError(f"--working-dir: {wd} is not a folder")
    return {
        "entrypoint": "raygen run --from-env",
        "runtime_env": {"working_dir": str(wd), "excludes": SECRET_EXCLUDES + BULK_EXCLUDES, "env_vars": env},
    }


def submit(config_path: str, *, address: str, overrides: list[str] | None = None, output: str | None = None,
           working_dir: str | Path = ".", pass_hf_token: bool = False, ray_token_file: str | None = None,
           wait: bool = False, timeout_s: float | None = None, log: Callable[[str], None] = print) -> tuple[str, str]:
    """Submit a run; returns (job id, status). With ``wait``, follows the job's logs to its end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    config = load_config(config_path, overrides, output)
    job = build_job(config, working_dir=working_dir, pass_hf_token=pass_hf_token)
    if config.upload.repo and not pass_hf_token and not config.upload.repo.startswith(("/", ".", "file:")):
        logger.warning("the run uploads to %s, and no HF_TOKEN is passed: the cluster needs its own "
                       "(set it on the nodes, or use --pass-hf-token)", config.upload.repo)
    # like Ray's own client: the token goes out only to a cluster said to use token auth
    token = ray_auth_token(ray_token_file) if ray_token_file or os.environ.get("RAY_AUTH_MODE") == "token" else None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = JobSubmissionClient(address, headers=headers)
    t_agent = time.monotonic() + 60
    while True:
        try:
            job_id = client.submit_job(entrypoint=job["entrypoint"], runtime_env=job["runtime_env"],
                                       metadata={"raygen": "run", "output": config.output.path})
            break
        except RuntimeError as exc:  # right after `ray up` / `ray start` the job agent may not be up yet
            if "No available agent" not in str(exc) or time.monotonic() > t_agent:
                raise
            time.sleep(3.0)
    log(f"submitted {job_id} to {address}: raygen run of {config_path} -> {config.output.path}")
    if not wait:
        return job_id, str(client.get_job_status(job_id))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            log(logs[shown:].rstrip("\n"))
            shown = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return job_id, str(status)
        if deadline is not None and time.monotonic() > deadline:
            client.stop_job(job_id)
            return job_id, "TIMEOUT"
        time.sleep(2.0)
