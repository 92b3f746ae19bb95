"""The benchmark suite: runs every benchmark in turn, prints the summary table and writes
docs/benchmarks.md. `make bench` runs it (ARGS="..." passes options).

    python benchmarks/run_all.py [--quick] [--repeats N] [--only NAME ...] [--out PATH]
                                 [--wait-idle SECONDS]

--quick runs tiny sizes with 1 repeat (a smoke test of the scripts, not real figures); it and
--only write the docs file only when --out names one, so docs/benchmarks.md always holds one
complete real run. Benchmarks run one after another, never two at once; before each one the
suite waits (--wait-idle, default 300 s, 0 with --quick) for other processes to leave the CPUs
quiet, and the docs record how busy they kept them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import common

common.default_torch_threads()  # note torch's default before any benchmark changes it

import a2c_cartpole  # noqa: E402
import dl_digits  # noqa: E402
import env_limit  # noqa: E402
import overhead  # noqa: E402
import ppo_cartpole  # noqa: E402
import sac_pendulum  # noqa: E402
import startup  # noqa: E402
import time_to_solve  # noqa: E402

WAIT_IDLE_S = 300  # default --wait-idle: the longest wait for a quiet machine before each benchmark
BUSY_WARNING = 0.2  # other processes' share of the CPUs above which the figures are suspect

# in this order: env_limit reuses ppo_cartpole's figure
BENCHMARKS: dict[str, Callable[[common.Options, common.Context], common.Result]] = {
    ppo_cartpole.NAME: ppo_cartpole.run,
    env_limit.NAME: env_limit.run,
    overhead.NAME: overhead.run,
    time_to_solve.NAME: time_to_solve.run,
    startup.NAME: startup.run,
    a2c_cartpole.NAME: a2c_cartpole.run,
    sac_pendulum.NAME: sac_pendulum.run,
    dl_digits.NAME: dl_digits.run,
}


def main(argv: list[str] | None = None) -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], argv, only=True)
    if args.wait_idle is None:
        args.wait_idle = 0 if args.quick else WAIT_IDLE_S
    names = args.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    out = args.out
    if out is None and not (args.quick or args.only):
        out = common.DEFAULT_OUT
    opts = common.Options(quick=args.quick, repeats=args.repeats)
    facts = common.machine_facts()  # before the runs: the commit whose code they import
    busy_before = common.wait_idle(args.wait_idle)
    if busy_before is not None and busy_before > BUSY_WARNING:
        print(
            f"WARNING: {common.load_note(busy_before)} before the suite starts; the figures "
            "(SB3 at its default thread count most of all) will be distorted.",
            flush=True,
        )
    print(
        f"Benchmarks: {', '.join(names)}{' (--quick)' if args.quick else ''}; "
        f"{facts['CPU cores (os.cpu_count())']} CPU cores, torch {facts['torch']}",
        flush=True,
    )
    ctx = common.Context()
    start = time.perf_counter()
    results = []
    for name in BENCHMARKS:
        if name in names:
            if results:  # the first one waited above
                common.wait_idle(args.wait_idle)
            result = common.run_timed(BENCHMARKS[name], opts, ctx)
            load = "" if result.other_load is None else f", other processes {result.other_load:.0%}"
            print(f"[{name}] done in {result.seconds:.0f} s{load}\n", flush=True)
            results.append(result)
    total = time.perf_counter() - start
    facts["other load (1 s before / after the suite)"] = (
        f"{common.load_note(busy_before)} / {common.load_note(common.cpu_busy())}"
    )
    common.print_summary(results)
    print(f"\nTotal wall time: {total / 60:.1f} min ({total:.0f} s)")
    if out is None:
        print("Docs not written (--quick / --only write only with --out PATH).")
        return
    command = " ".join(["python", "benchmarks/run_all.py", *(argv or sys.argv[1:])])
    common.write_doc(out, results, facts, common.how_line(command, results, total, args.quick))
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
