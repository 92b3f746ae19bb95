"""python -m dl_runner [group=option ...] [key=value ...]  (default: MLP classifier on digits)"""

from runner_core.entrypoint import main

if __name__ == "__main__":
    main("dl")
