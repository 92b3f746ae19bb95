"""python -m rl_runner [group=option ...] [key=value ...]"""

from runner_core.entrypoint import main

if __name__ == "__main__":
    main("train")
