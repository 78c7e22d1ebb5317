"""`raygen submit`: the job it builds ships no secrets, and a submitted run succeeds on a real `ray start --head`."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from raygen.cluster.submit import CONFIG_ENV, build_job, config_from_env, ray_auth_token
from raygen.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = ["source.episodes=2", "source.width=32", "source.height=32", "source.task_params={steps_per_segment: 10}",
        "resources.cpu_workers=1", "output.shard_size=2", "output.video_codec=libx264"]


def _shipped(job: dict, tmp_path: Path) -> set[str]:
    """The files Ray's own packager puts in the working-dir package, with the job's excludes."""
    from ray._private.runtime_env.packaging import _zip_files

    env = job["runtime_env"]
    out = tmp_path / "pkg.zip"
    _zip_files(env["working_dir"], env["excludes"], str(out), include_gitignore=True)
    with zipfile.ZipFile(out) as z:
        return {n for n in z.namelist() if not n.endswith("/")}


def test_the_job_carries_the_checked_config_and_no_secrets(tmp_path, monkeypatch):
    wd = tmp_path / "proj"
    code = ["raygen_code.py", "configs/run.yaml", "models/tokenizer.py", "data/keypoints.json", "monkey.py"]
    secret = [".env", "deploy/prod.env", "prod.env.local", ".envrc", "secrets/hf_token", "HF_TOKEN", "Token.txt",
              "deploy/Secrets.yaml", ".ray/auth_token", "id_rsa", ".ssh/id_ed25519", ".git-credentials",
              "gcp/application_default_credentials.json", "sa-key.json", "tls/server.key", "cert.p12",
              ".kube/config", ".s3cfg", ".aws/credentials", "db_password.txt"]
    bulk = [".venv/lib/x.py", "out/ds/meta/info.json", ".git/config"]
    for rel in code + secret + bulk:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text("source: {episodes: 3}\n" if rel.endswith("run.yaml") else "x\n")
    env_file = tmp_path / "outside.env"
    env_file.write_text("HF_TOKEN=from-env-file-123\n")
    cfg = load_config(wd / "configs/run.yaml", ["upload.repo=lab/x", f"upload.env_file={env_file}"],
                      output="/staging/x")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="output.path: 'out/x' is relative"):
        build_job(load_config(wd / "configs/run.yaml", [], output="out/x"), working_dir=wd)
    with pytest.raises(ValueError, match="upload.repo: './mirror' is a relative folder"):
        build_job(load_config(wd / "configs/run.yaml", ["upload.repo=./mirror"], output="/s/x"), working_dir=wd)

    job = build_job(cfg, working_dir=wd)
    assert _shipped(job, tmp_path) == set(code)
    env = job["runtime_env"]["env_vars"]
    assert "HF_TOKEN" not in env and job["entrypoint"] == "raygen run --from-env"
    shipped = config_from_env(env)
    assert shipped.source.episodes == 3 and shipped.output.path == "/staging/x"
    assert shipped.upload.repo == "lab/x" and shipped.upload.env_file is None  # a local path stays here

    asked = build_job(cfg, working_dir=wd, pass_hf_token=True)["runtime_env"]["env_vars"]
    assert asked["HF_TOKEN"] == "from-env-file-123" and "from-env-file-123" not in asked[CONFIG_ENV]
    assert config_from_env({}) is None
    with pytest.raises(ValueError, match=CONFIG_ENV):
        config_from_env({CONFIG_ENV: "source: {episodes: -1}"})


def test_ray_auth_token_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert ray_auth_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray/auth_token").write_text("default-file\n")
    assert ray_auth_token() == "default-file"
    other = tmp_path / "tok"
    other.write_text("path-file")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(other))
    assert ray_auth_token() == "path-file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert ray_auth_token() == "from-env"
    assert ray_auth_token(str(other)) == "path-file"
    with pytest.raises(ValueError, match="does not exist"):
        ray_auth_token(str(tmp_path / "nope"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_cluster(temp_dir: str) -> None:
    """Stop only the processes of this test's head (``ray stop`` would stop every Ray on the machine)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmd and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.ray
@pytest.mark.timeout(480)
def test_submit_to_a_local_head_with_token_auth(tmp_path):
    """`ray start --head` with Ray 2.60 token auth; `raygen submit --wait` runs the embedded default; verify."""
    temp_dir = tempfile.mkdtemp(prefix="rgj-", dir="/tmp")  # short: Ray's socket paths live under it
    token = secrets.token_hex(16)
    token_file = tmp_path / "ray_token"
    token_file.write_text(token)
    gcs, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    try:
        # every port of its own: another Ray on the machine (a test's ray.init) must not collide with it
        ports = [f"--{name}={_free_port()}" for name in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
            "runtime-env-agent-port", "node-manager-port", "object-manager-port", "ray-client-server-port")]
        subprocess.run([ray_bin, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
                        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                        f"--temp-dir={temp_dir}", "--disable-usage-stats", *ports],
                       env=env, check=True, capture_output=True, timeout=120)
        out = tmp_path / "ds"
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        code = ("import sys; from raygen.cli import main; sys.exit(main(sys.argv[1:]))")
        args = [sys.executable, "-c", code, "submit", str(REPO / "configs/pick_place_local.yaml"),
                "--address", f"http://127.0.0.1:{dash}", "--output", str(out), "--working-dir", str(REPO),
                "--ray-token-file", str(token_file), "--wait", "--timeout", "360"]
        for kv in TINY:
            args += ["--set", kv]
        proc = subprocess.run(args, env=client_env, capture_output=True, text=True, timeout=420)
        logs = Path(temp_dir, "session_latest", "logs")
        agent = "".join(p.read_text(errors="replace")[-2000:] for p in logs.glob("dashboard_agent*"))
        assert proc.returncode == 0 and "SUCCEEDED" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:] + agent
        assert "verify: VALID" in proc.stdout
        from raygen.datasets.verify import verify_dataset

        assert verify_dataset(out).ok and len(list((out / "data").rglob("*.parquet"))) == 1

        # without the token the cluster refuses the job
        args[args.index("--ray-token-file") + 1] = str(tmp_path / "wrong")
        (tmp_path / "wrong").write_text("not-the-token")
        refused = subprocess.run(args, env=client_env, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and token not in refused.stdout + refused.stderr
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its address there, as `ray stop` would
        if current.exists() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()
