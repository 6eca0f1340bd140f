import json
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from rekko.artifacts import (
    Manifest,
    read_manifest,
    read_topk,
    safe_loads,
    topk_from_bytes,
    topk_to_bytes,
    write_manifest,
    write_topk,
)
from rekko.exceptions import ArtifactError, UnsafePickleError
from rekko.io import sha256_file
from rekko.pipeline.similarity import TopKSimilarity


def make_topk() -> TopKSimilarity:
    m = sp.csr_matrix(np.array([[0, 0.5, 0.2], [0.5, 0, 0], [0.2, 0, 0]], dtype=np.float32))
    return TopKSimilarity(np.array(["a", "б", "c"], dtype=object), m)


def test_round_trip(tmp_path):
    sim = make_topk()
    path = tmp_path / "s.pkl"
    write_topk(sim, path)
    back = read_topk(path, sha256_file(path))
    assert list(back.movie_ids) == ["a", "б", "c"]
    assert (back.matrix != sim.matrix).nnz == 0


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"format": "rekko.topk-similarity/1", "movie_ids": Evil(marker)})
    path = tmp_path / "cos_sim_md.pkl"
    path.write_bytes(payload)
    # even with a matching hash (an attacker who rewrote the manifest too) nothing runs
    with pytest.raises(UnsafePickleError, match="refusing to load posix.system|refusing to load os.system"):
        read_topk(path, sha256_file(path))
    assert not marker.exists()


def test_restricted_unpickler_refuses_builtins_eval():
    evil = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(UnsafePickleError):
        safe_loads(evil)


def test_object_arrays_are_refused():
    payload = pickle.loads(topk_to_bytes(make_topk()))
    payload["data"] = np.array([1, "x"], dtype=object)
    with pytest.raises((ArtifactError, UnsafePickleError)):
        topk_from_bytes(pickle.dumps(payload))


def test_sha_mismatch_is_reported(tmp_path):
    path = tmp_path / "s.pkl"
    write_topk(make_topk(), path)
    with pytest.raises(ArtifactError, match="does not match the manifest.*Rerun the pipeline"):
        read_topk(path, "0" * 64)


def test_inconsistent_csr_is_refused():
    payload = pickle.loads(topk_to_bytes(make_topk()))
    payload["indices"] = np.array([7, 7, 7], dtype=np.int32)
    with pytest.raises(ArtifactError, match="inconsistent"):
        topk_from_bytes(pickle.dumps(payload))


def test_manifest_round_trip_and_schema_check(tmp_path):
    path = tmp_path / "manifest.json"
    write_manifest(Manifest(parameters={"similarity": {"k": 3}}), path)
    assert read_manifest(path).parameters == {"similarity": {"k": 3}}
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "parameters": {"k": 3}}))
    with pytest.raises(ArtifactError, match=r"unknown key\(s\) \['k'\]"):
        read_manifest(path)
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="schema version 99"):
        read_manifest(path)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(path)
