"""`python -m rl_runner.eval` and `python -m dl_runner.eval`: a checkpoint's policy or model
evaluated through no training code path, reproducing the run's final evaluation; videos of
episodes, from the eval command and during training."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from tests.conftest import compose_cfg, read_metrics, read_summary, run_cli, run_train


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ppo") / "run"
    run_train(compose_cfg(["algo.total_steps=4096", "eval.episodes=5"]), run_dir)
    return run_dir


@pytest.mark.parametrize(
    "overrides",
    [("algo.total_steps=4096", "eval.episodes=5"),  # the numpy backend
     ("algo.total_steps=1024", "eval.episodes=5", "env=pendulum", "algo.normalize_obs=true",
      "algo.normalize_reward=true")],  # the torch reference, with normalizer statistics
    ids=["numpy-cartpole", "torch-pendulum-normalized"],
)  # fmt: skip
def test_eval_reproduces_the_runs_final_evaluation(tmp_path, overrides):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(list(overrides)), run_dir)
    result = run_cli("rl_runner.eval", str(run_dir), cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert "return" in result.stdout and "mean" in result.stdout
    evaluation = json.loads((run_dir / "eval.json").read_text())
    summary = read_summary(run_dir)
    assert evaluation["return"]["mean"] == summary["eval/mean_return"]  # exactly
    assert evaluation["episodes"] == 5 and evaluation["step"] == summary["global_step"]
    assert set(evaluation["length"]) == {"mean", "std", "min", "max"}


def test_eval_options_and_its_output_file(tmp_path, ppo_run):
    out = tmp_path / "elsewhere" / "e.json"
    result = run_cli("rl_runner.eval", str(ppo_run / "checkpoints" / "final.pt"), "episodes=7",
                     "deterministic=false", "seed=3", f"out={out}", cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.stderr
    evaluation = json.loads(out.read_text())
    assert (evaluation["episodes"], evaluation["deterministic"], evaluation["seed"]) == (
        7, False, 3,
    )  # fmt: skip
    bad = run_cli("rl_runner.eval", str(ppo_run), "episodes=zero", cwd=tmp_path)
    assert bad.rc == 2 and "Traceback" not in bad.output
    assert "'episodes'" in bad.stderr and "'zero'" in bad.stderr
    missing = run_cli("rl_runner.eval", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.rc == 2 and "no such run directory" in missing.stderr


def test_eval_records_videos_that_decode(tmp_path, ppo_run):
    result = run_cli("rl_runner.eval", str(ppo_run), "episodes=2", "video=true",
                     "video_episodes=2", f"out={tmp_path / 'e.json'}", cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.stderr
    videos = json.loads((tmp_path / "e.json").read_text())["videos"]
    assert len(videos) == 2
    for video in videos:
        reader = imageio.get_reader(video["file"], "ffmpeg")
        # RecordVideo captures the reset and every step; moviepy, which encodes its files,
        # may drop the last frame when it rounds the clip's duration
        assert reader.count_frames() in (video["steps"] + 1, video["steps"]) and video["steps"]
        assert reader.get_meta_data()["fps"] == 50  # CartPole's render_fps


def test_training_records_a_video_at_each_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo.total_steps=1024", "eval.every_steps=512", "eval.video=true"]),
              run_dir)  # fmt: skip
    files = sorted(p.name for p in (run_dir / "videos").glob("*.mp4"))
    assert files == ["eval-step1024.mp4", "eval-step512.mp4"]
    lengths = {r["step"]: r["eval/video_length"] for r in read_metrics(run_dir)
               if "eval/video_length" in r}  # fmt: skip
    for step in (512, 1024):
        reader = imageio.get_reader(run_dir / "videos" / f"eval-step{step}.mp4", "ffmpeg")
        assert reader.count_frames() == lengths[step] > 0  # one frame per step, exactly
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("eval/video")] == [512, 1024]


def test_dl_eval_gives_the_checkpoints_test_metrics(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo.epochs=2"], "dl"), run_dir)
    result = run_cli("dl_runner.eval", str(run_dir), cwd=tmp_path)
    assert result.rc == 0, result.stderr
    evaluation = json.loads((run_dir / "eval.json").read_text())
    summary = read_summary(run_dir)
    assert evaluation["test/acc"]["mean"] == pytest.approx(summary["test/acc"], abs=1e-12)
    assert evaluation["split"] == "test" and evaluation["examples"] == 269
    val = run_cli("dl_runner.eval", str(run_dir), "split=val", f"out={tmp_path / 'v.json'}",
                  cwd=tmp_path)  # fmt: skip
    assert val.rc == 0
    assert json.loads((tmp_path / "v.json").read_text())["val/acc"]["mean"] == pytest.approx(
        summary["val/acc"], abs=1e-12
    )
