"""Issue 16 item 4: policy repositories fit their tools.

- The SIP-001 JSON Schema has a stable `$id`, every bundled policy names it in `"$schema"` (what editors
  follow to complete and validate), jsonschema validates each policy against it as an editor would, and
  scc accepts `$schema` (a string) like any other key of the source.
- `.pre-commit-hooks.yaml`: each hook run as pre-commit runs it (its entry, the changed files its
  `files`/`exclude` select, or none) on a copy of a policy repository: clean, then a broken policy and a
  failing test case each fail their hook.
- `examples/ci/policies.yml`: its `run` steps (all but installing the package) run in order with bash
  as GitHub Actions does, in a policy repository with a local ledger: check, test, package with a
  throwaway key when there is no secret, and with the secret key package and register, twice (the second
  run registers nothing again)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from axon.keys import write_key_file
from axon.ledger import Ledger, ops
from scc.compiler import check_policy, compile_policy
from scc.structure import load_schema
from tests.service_support import identity

pytestmark = pytest.mark.slow  # runs the commands as processes

REPO = Path(__file__).resolve().parent.parent
POLICIES = sorted(p for p in (REPO / "policies").glob("*.json") if not p.name.endswith(".test.json"))
SCHEMA_ID = "https://sopcos.example/schemas/sip-001.schema.json"
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]  # GitHub Actions' `shell: bash`


def test_every_bundled_policy_names_the_schema_by_its_id_and_validates_against_it():
    schema = load_schema()
    assert schema["$id"] == SCHEMA_ID and schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = Draft202012Validator(schema)
    assert len(POLICIES) == 6
    for path in POLICIES:
        doc = json.loads(path.read_text())
        assert doc["$schema"] == schema["$id"], path.name
        assert list(validator.iter_errors(doc)) == [], path.name


def test_scc_accepts_schema_as_a_string_and_nothing_else():
    source = json.loads(POLICIES[0].read_text())
    assert "$schema" in source
    assert compile_policy(json.dumps(source).encode()).wasm.startswith(b"\0asm")
    without = {k: v for k, v in source.items() if k != "$schema"}
    assert check_policy(json.dumps(without).encode()).valid  # optional
    result = check_policy(json.dumps({**source, "$schema": 5}).encode())
    assert [(d.code, d.pointer) for d in result.errors] == [("SCC-E012", "/$schema")]
    assert "a JSON Schema address" in result.errors[0].message


def test_scc_schema_writes_the_schema_as_shipped(tmp_path):
    done = subprocess.run(["scc", "schema", "-o", "sip-001.schema.json"], cwd=tmp_path, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "sip-001.schema.json").read_bytes()
    assert written == (REPO / "scc" / "schema" / "sip-001.schema.json").read_bytes()
    printed = subprocess.run(["scc", "schema"], capture_output=True, timeout=60)
    assert printed.returncode == 0 and printed.stdout == written
    assert json.loads(written)["$id"] == SCHEMA_ID


# -- pre-commit ------------------------------------------------------------------------------------


REPOSITORY_POLICIES = ("boiler-guard", "tank-overfill")  # two of the bundled ones: each step is a process


def policy_repository(tmp_path: Path) -> Path:
    """A policy repository: two bundled policies and their test files under policies/."""
    repo = tmp_path / "plant-policies"
    (repo / "policies").mkdir(parents=True)
    for name in REPOSITORY_POLICIES:
        for suffix in (".json", ".test.json"):
            shutil.copy(REPO / "policies" / (name + suffix), repo / "policies")
    return repo


def run_hook(hook: dict, repo: Path, changed: list[str]) -> subprocess.CompletedProcess:
    """As pre-commit runs a hook: the files its `files`/`exclude` select among those changed, appended to
    its entry and args (none when pass_filenames is false); skipped (None) when none is selected."""
    selected = [f for f in changed if re.search(hook.get("files", ""), f)
                and not (hook.get("exclude") and re.search(hook["exclude"], f))]
    argv = shlex.split(hook["entry"]) + hook.get("args", [])
    if hook.get("pass_filenames", True):
        argv += selected
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=120) if selected else None


def test_the_pre_commit_hooks_check_and_test_a_policy_repository(tmp_path):
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"scc-check", "scc-test"}
    assert all(h["language"] == "python" for h in hooks.values())
    repo = policy_repository(tmp_path)
    changed = sorted(str(p.relative_to(repo)) for p in (repo / "policies").glob("*.json"))
    assert len(changed) == 2 * len(REPOSITORY_POLICIES)

    check = run_hook(hooks["scc-check"], repo, changed)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stderr.count(": valid, 0 warnings") == len(REPOSITORY_POLICIES)  # no test file
    tests = run_hook(hooks["scc-test"], repo, changed)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert run_hook(hooks["scc-check"], repo, ["README.md"]) is None

    boiler = repo / "policies" / "boiler-guard.json"
    boiler.write_text(boiler.read_text().replace('"default": "DENY"', '"default": "MAYBE"'))
    check = run_hook(hooks["scc-check"], repo, changed)
    assert check.returncode == 1
    assert "policies/boiler-guard.json:/default" in check.stdout
    assert "policies/tank-overfill.json: valid" in check.stderr  # the others are still checked

    shutil.copy(REPO / "policies" / "boiler-guard.json", boiler)
    cases = repo / "policies" / "boiler-guard.test.json"
    cases.write_text(cases.read_text().replace('"HALT"', '"ALLOW"', 1))
    tests = run_hook(hooks["scc-test"], repo, ["policies/boiler-guard.test.json"])
    assert tests.returncode == 1 and "failed" in tests.stdout


# -- the CI workflow example -----------------------------------------------------------------------


def workflow_steps() -> list[dict]:
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "policies.yml").read_text())
    (job,) = workflow["jobs"].values()
    return job["steps"]


def run_steps(steps: list[dict], repo: Path, env: dict[str, str]) -> dict[str, subprocess.CompletedProcess]:
    done = {}
    for step in steps:
        if "run" not in step or step["name"] == "Install Sopcos Edge":
            continue
        done[step["name"]] = result = subprocess.run(BASH + [step["run"]], cwd=repo, env=env,
                                                     capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (step["name"], result.stdout, result.stderr)
    return done


def test_the_ci_example_checks_tests_packages_and_registers_with_the_secret_key(tmp_path):
    steps = workflow_steps()
    assert [s.get("name") for s in steps if "run" in s] == ["Install Sopcos Edge", "Check", "Test", "Package",
                                                           "Register"]
    register = next(s for s in steps if s.get("name") == "Register")
    assert register["if"] == "github.ref == 'refs/heads/main' && env.SOPCOS_KEY != ''"
    repo = policy_repository(tmp_path)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    ledger = tmp_path / "plant.ledger"
    root, publisher = identity("plant-root"), identity("ci-publisher")
    with Ledger.init(ledger, root) as opened:
        opened.sign_and_submit(root, ops.register_key(publisher.did, publisher.key.public_key, "LVL_4"),
                               int(time.time()))
    key_file = tmp_path / "publisher.key"
    write_key_file(key_file, publisher.key, publisher.did)
    base = {**os.environ, "POLICIES": "policies", "RUNNER_TEMP": str(runner_temp),
            "SOPCOS_LEDGER": str(ledger), "SOPCOS_KEY_PASSPHRASE": ""}

    # a pull request from a fork: no secret, so Package signs with a throwaway key (and Register is skipped)
    done = run_steps([s for s in steps if s.get("name") == "Package"], repo, {**base, "SOPCOS_KEY": ""})
    assert sorted(p.stem for p in (repo / "dist").glob("*.sop")) == list(REPOSITORY_POLICIES)
    assert "did:sopcos:ci-throwaway#key-1" in done["Package"].stdout + done["Package"].stderr

    # main, with the secret key in the environment (never on disk): package and register, twice
    shutil.rmtree(repo / "dist")
    secret = {**base, "SOPCOS_KEY": key_file.read_text()}
    key_file.unlink()
    first = run_steps(steps, repo, secret)
    assert (repo / "scc-test.xml").exists()
    assert first["Register"].stdout.count("VERIFIED") == len(REPOSITORY_POLICIES)
    with Ledger.open(ledger) as opened:
        registered = opened.artifacts()
    assert sorted(a.policy for a in registered) == list(REPOSITORY_POLICIES)
    assert {a.registered_by for a in registered} == {publisher.did}
    again = run_steps([s for s in steps if s.get("name") == "Register"], repo, secret)
    assert again["Register"].stdout.count("already registered") == len(REPOSITORY_POLICIES)
    with Ledger.open(ledger) as opened:
        assert len(opened.artifacts()) == len(REPOSITORY_POLICIES)
