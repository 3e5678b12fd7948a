"""deploy/cluster-onprem.yaml, for real: `ray up` against an SSH server on loopback (this machine as the
on-premises head node), then `specdec serve` on the cluster with `ray exec`, a generation through the
orchestrator and the `ray job submit` example, then `ray down`.

The YAML is used as shipped except for what names the hosts: head_ip 127.0.0.1 and no workers, the SSH
user and a key made for the test, and ~/specdec (where `ray up` would copy the checkout) replaced by
this checkout, which the "remote" node already sees.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import ENV, RAY

REPO = Path(__file__).resolve().parents[2]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("rsync") and shutil.which("ssh")),
    reason="needs an SSH server, ssh and rsync to run `ray up` against loopback "
           "(Debian: apt-get install openssh-server rsync)")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sshd(tmp_path):
    """An SSH server on port 22 (Ray's local provider dials 22) that accepts a key made for this test."""
    if port_open(22):
        pytest.skip("port 22 is taken: this test starts its own SSH server there")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "host_key")], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "id_ed25519.pub").read_text())
    config = tmp_path / "sshd_config"
    config.write_text(f"Port 22\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host_key'}\n"
                      f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPasswordAuthentication no\n"
                      "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
                      f"PidFile {tmp_path / 'sshd.pid'}\nSetEnv PATH={os.environ['PATH']}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not port_open(22):
        assert server.poll() is None, f"sshd exited: {server.stderr.read()}"
        assert time.monotonic() < deadline, "sshd did not start listening"
        time.sleep(0.2)
    yield key
    server.terminate()
    server.wait(timeout=20)


def onprem_config(tmp_path: Path, key: Path) -> Path:
    cluster = yaml.safe_load((REPO / "deploy" / "cluster-onprem.yaml").read_text())
    cluster["cluster_name"] = "specdec-loopback-test"
    cluster["provider"] |= {"head_ip": "127.0.0.1", "worker_ips": []}
    cluster["min_workers"] = cluster["max_workers"] = 0
    cluster["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(key)}
    cluster["file_mounts"] = {}  # the "remote" node is this machine: it sees this checkout already
    for section in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        cluster[section] = [command.replace("~/specdec", str(REPO)) for command in cluster[section]]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    return path


def run(*command: str, timeout: float = 600) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def test_ray_up_serve_generate_job_and_down(sshd, tmp_path):
    run(RAY, "get-auth-token", "--generate")  # the cluster's token, at ~/.ray/auth_token (file_mounts in the YAML)
    cluster = onprem_config(tmp_path, sshd)
    specdec = f"{REPO}/.venv/bin/specdec" if (REPO / ".venv/bin/specdec").exists() else \
        f"{sys.executable} -m specdec.orchestrator.cli"
    try:
        up = run(RAY, "up", "-y", "--no-config-cache", str(cluster))  # serve --address auto below needs its head
        serve = run(RAY, "exec", str(cluster), f"{specdec} serve --address auto --detach --port 0")
        address = next(line.split()[-1] for line in serve.splitlines() if "orchestrator listening on" in line)
        generate = run(RAY, "exec", str(cluster), f"{specdec} generate --address {address} --temperature 0 "
                                                  f"--max-new-tokens 16 --ignore-eos --stats 'def add(a, b):'")
        assert "output_tokens: 16" in generate, generate[-3000:]
        print(f"ray up: {up.splitlines()[-1]}\nserve: {serve[-600:]}\ngenerate: {generate[-1500:]}")
        job = run(RAY, "job", "submit", "--address", "http://127.0.0.1:8265", "--",
                  sys.executable, str(REPO / "deploy" / "job_generate.py"), "--prompt", "import os\n",
                  "--max-new-tokens", "8")
        assert '"output_tokens": 8' in job, job[-3000:]
        print(f"job: {job[-1200:]}")
        status = run(RAY, "exec", str(cluster), f"{specdec} status --json")
        for actor in ("specdec-orchestrator", "specdec-orchestrator-draft-0", "specdec-orchestrator-target-0"):
            assert f'"name": "{actor}"' in status, status[-3000:]
    finally:
        down = subprocess.run([RAY, "down", "-y", str(cluster)], capture_output=True, text=True, env=ENV,
                              timeout=300, cwd=REPO)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=ENV, timeout=120)
    assert down.returncode == 0, down.stderr[-3000:]
