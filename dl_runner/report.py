"""python -m dl_runner.report <run or sweep dirs...> [--metric val/acc ...] [--out DIR]

Compares runs grouped by configuration (seeds of one setting together): see runner_core.report.
The same command reports RL runs too (python -m rl_runner.report is the same program).
"""

from runner_core.report import run

if __name__ == "__main__":
    run("python -m dl_runner.report")
