"""Bad input on the command line: a non-zero exit, one readable message naming the key and the
bad value, no traceback, and nothing left behind (neither in outputs/ nor in a run dir that a
refused resume pointed at). The cases run concurrently, each in its own directory."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.conftest import Result, compose_cfg, leftovers, run_cli, run_train, tree_hashes


@dataclass
class Case:
    args: tuple[str, ...]
    expect: tuple[str, ...]  # substrings of the output (stdout + stderr)
    module: str = "rl_runner"
    run_dir: str | None = None  # a run dir the command must leave untouched
    skip: str | None = None
    cwd: Path = field(default=Path())
    result: Result | None = None
    hashes: dict[str, str] | None = None


def _cases(base: Path) -> dict[str, Case]:
    cuda = "CUDA is available here" if torch.cuda.is_available() else None
    return {
        "unknown-algo": Case(("algo=foo",), ("'algo/foo'", "options in 'algo':", "dqn, ppo")),
        "unknown-env": Case(("env=foo",), ("env", "foo")),
        "misspelled-key": Case(("algo.lrr=1",), ("'algo.lrr'", "+algo.lrr=1")),
        "lr-zero": Case(("algo.lr=0",), ("'algo.lr'", "value 0,", "a number > 0")),
        "lr-negative": Case(("algo.lr=-1",), ("'algo.lr'", "value -1,", "a number > 0")),
        "gamma": Case(("algo.gamma=1.5",), ("'algo.gamma'", "1.5", "[0.0, 1.0]")),
        "total-steps": Case(("algo.total_steps=0",), ("'algo.total_steps'", "value 0,")),
        "num-envs": Case(("env.num_envs=-1",), ("'env.num_envs'", "value -1,")),
        "dqn-continuous": Case(("algo=dqn", "env=pendulum"),
                               ("algo=dqn", "Pendulum-v1", "continuous action space")),
        "no-such-env-id": Case(("env=gym", "env.id=NoSuchEnv-v0"), ("'env.id'", "NoSuchEnv-v0")),
        "gym-without-id": Case(("env=gym",), ("'env.id'", "no value", "env.id=")),
        "cuda": Case(("device=cuda",), ("'device'", "cuda", "not available"), skip=cuda),
        "dl-bad-optimizer": Case(("algo.optimizer=rmsprop",), ("'algo.optimizer'", "rmsprop"),
                                 module="dl_runner"),
        "multirun-unknown-algo": Case(("--multirun", "algo=foo,ppo"), ("'algo/foo'",)),
        "resume-missing": Case((f"resume={base / 'missing'}",),
                               ("resume=", str(base / "missing"), "no such run directory")),
        "resume-loose-file": Case((f"resume={base / 'notes.txt'}",),
                                  (str(base / "notes.txt"), "outside a run's", "init_from=")),
        "resume-text-file": Case((f"resume={base / 'text' / 'checkpoints' / 'latest.pt'}",),
                                 ("latest.pt", "damaged"), run_dir="text"),
        "resume-foreign-torch-file": Case((f"resume={base / 'foreign'}",),
                                          ("latest.pt", "not one of this runner"),
                                          run_dir="foreign"),
        "resume-corrupt": Case((f"resume={base / 'corrupt'}",),
                               ("latest.pt", "damaged"), run_dir="corrupt"),
        "resume-corrupt-file": Case((f"resume={base / 'corrupt2' / 'checkpoints' / 'latest.pt'}",),
                                    ("latest.pt", "damaged"), run_dir="corrupt2"),
        "resume-other-override": Case((f"resume={base / 'good'}", "algo.lr=1"),
                                      ("algo.lr=1", "logger.*", "init_from="), run_dir="good"),
        "init-from-missing": Case((f"init_from={base / 'missing.pt'}",),
                                  ("missing.pt", "does not exist")),
        "init-from-other-algo": Case(("algo=dqn", f"init_from={base / 'good'}"),
                                     ("'init_from'", "algo=ppo", "algo=dqn"), run_dir="good"),
        "seed-too-large": Case(("seed=1180591620717411303424",),
                               ("'seed'", "1180591620717411303424", "[0, 4294967295]")),
        "seed-too-large-dqn": Case(("algo=dqn", "seed=4294967296"), ("'seed'", "4294967296")),
        "gym-missing-dependency": Case(("env=gym", "env.id=LunarLander-v3"),
                                       ("LunarLander-v3", "optional dependency", '.[box2d]"'),
                                       skip=_box2d_installed()),
        "resume-bad-logger-value": Case((f"resume={base / 'good'}", "logger.console=loud"),
                                        ("'logger.console'", "loud"), run_dir="good"),
    }  # fmt: skip


def _box2d_installed() -> str | None:
    import importlib.util

    return "Box2D is installed here" if importlib.util.find_spec("Box2D") else None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    (base / "notes.txt").write_text("not a checkpoint\n")
    for name in ("text", "foreign"):
        (base / name / "checkpoints").mkdir(parents=True)
    (base / "text" / "checkpoints" / "latest.pt").write_text("not a checkpoint\n")
    torch.save({"a": 1}, base / "foreign" / "checkpoints" / "latest.pt")
    run_train(compose_cfg(), base / "good")
    # a run killed before its end whose only checkpoint is damaged: nothing to fall back to
    (base / "corrupt" / "checkpoints").mkdir(parents=True)
    latest = base / "corrupt" / "checkpoints" / "latest.pt"
    latest.write_bytes((base / "good" / "checkpoints" / "latest.pt").read_bytes()[:-2000])
    shutil.copytree(base / "corrupt", base / "corrupt2")  # the cases run at once: one dir each

    cases = {k: c for k, c in _cases(base).items() if c.skip is None}
    for name, case in cases.items():
        case.cwd = tmp_path_factory.mktemp(name)
        if case.run_dir:
            case.hashes = tree_hashes(base / case.run_dir)

    def go(case: Case) -> None:
        case.result = run_cli(case.module, *case.args, cwd=case.cwd)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(go, cases.values()))
    return base, cases


@pytest.mark.parametrize("name", list(_cases(Path("/base"))))
def test_bad_input(outcomes, name):
    base, cases = outcomes
    if name not in cases:
        pytest.skip(_cases(base)[name].skip)
    case = cases[name]
    result = case.result
    assert result is not None
    assert result.rc != 0, result.output
    assert "Traceback" not in result.output
    for text in case.expect:
        assert text in result.output, f"{text!r} not in {result.output!r}"
    assert leftovers(case.cwd) == [], "a refused run left files in outputs/"
    if case.run_dir:
        assert tree_hashes(base / case.run_dir) == case.hashes, "a refused resume changed the run"


def test_config_errors_exit_2_with_one_line(outcomes):
    _, cases = outcomes
    for name in ("lr-zero", "gamma", "dqn-continuous", "resume-missing", "unknown-algo",
                 "misspelled-key"):  # fmt: skip
        result = cases[name].result
        assert result.rc == 2, name
        assert result.stderr.startswith("Error: "), name
        assert result.stderr.count("\n") == 1, f"{name}: {result.stderr!r}"
