"""A real S3-compatible server (moto's server mode) on 127.0.0.1 for the partitioned-input tests."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

#: Credentials the tests hand to the server: fake, but treated as secrets (they must never be printed).
SECRET = "test-secret-Zq81vP"
KEY_ID = "AKIATESTKEYID000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Start moto's threaded server on a free port; yield the AWS_* environment that points at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": KEY_ID,
               "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    finally:
        server.stop()


def _forget_s3_filesystems() -> None:
    """Drop fsspec's cached S3 filesystems: each read the endpoint from the environment when it was made,
    so one made for an earlier test's moto server would keep calling that (stopped) server."""
    try:
        import s3fs
    except ImportError:
        return
    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _forget_s3_filesystems()
    try:
        yield
    finally:
        _forget_s3_filesystems()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def upload_parts(env: dict[str, str], bucket: str, prefix: str, parts: list[pd.DataFrame]) -> str:
    """Write ``parts`` as parquet objects under ``s3://bucket/prefix/``; return that URL."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for i, df in enumerate(parts):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        s3.put_object(Bucket=bucket, Key=f"{prefix}/part-{i:05d}.parquet", Body=buf.getvalue())
    s3.put_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS", Body=b"")
    return f"s3://{bucket}/{prefix}/"
