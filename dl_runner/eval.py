"""python -m dl_runner.eval <run dir or checkpoint> [split=test] [out=...]

The metrics of a trained model on a split of its data set (the test split by default): the model
comes from the checkpoint (a run directory's newest), the data set and its split and
normalization from the run's config (the split is drawn from the run's seed). Prints the metrics
and writes eval.json (in the run directory unless `out=` says where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from runner_core.errors import ConfigError
from runner_core.evaluation import EVAL_FILE, load_target, parse, report, run_command

PROGRAM = "python -m dl_runner.eval"
DEFAULTS: dict[str, tuple[type, Any]] = {"split": (str, "test"), "out": (str, None)}


def main(argv: list[str]) -> None:
    from dl_runner.trainer import DLTrainer, prepare

    target, options = parse(argv, PROGRAM, DEFAULTS)
    if options["split"] not in ("train", "val", "test"):
        raise ConfigError(
            f"Option 'split' has the value {options['split']!r}; it must be train, val or test."
        )
    run_dir, ckpt, state = load_target(target)
    cfg = OmegaConf.create(state["config"])
    if cfg.algo.family != "dl":
        raise ConfigError(f"{ckpt} is a checkpoint of an RL run; use python -m rl_runner.eval.")
    from runner_core.device import resolve_device

    trainer: DLTrainer = prepare(cfg, lambda _: resolve_device("cpu", cfg.device.threads))
    trainer.load_learned(state["session"])
    split = options["split"]
    metrics = trainer.evaluate(split)
    facts = {"checkpoint": str(ckpt), "step": int(state["step"]), "dataset": cfg.dataset.name,
             "split": split, "examples": len(getattr(trainer.data, split))}  # fmt: skip
    out = Path(options["out"]) if options["out"] else run_dir / EVAL_FILE
    columns = {name: [value] for name, value in metrics.items()}
    report(f"{cfg.algo.name} on {cfg.dataset.name} ({split})", columns, facts, out)


if __name__ == "__main__":
    run_command(main)
