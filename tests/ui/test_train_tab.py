"""The Train tab's words, in process: a progress line from a run's metrics, tqdm output as
the terminal leaves it, and the number fields passing only what differs from the profile."""

from __future__ import annotations

from tests.ui.test_loss_chart import run_with
from trainer.ui.child import final_lines
from trainer.ui.train_tab import changed_length, progress_html, run_options, split_settings, with_setting


def test_a_progress_bar_redrawn_shows_its_last_drawing_and_the_last_lines_are_kept():
    tqdm = "Loading weights:   0%|  | 0/272\rLoading weights:  50%|# | 136/272\rLoading weights: 100%|##| 272/272\n"
    assert final_lines("start\n" + tqdm + "done\n") == "start\nLoading weights: 100%|##| 272/272\ndone"
    assert final_lines("".join(f"line {i}\n" for i in range(20)), 2) == "line 18\nline 19"


def test_progress_of_a_run_has_its_average_speed_and_peak_memory(tmp_path):
    run = run_with(tmp_path, "run", [{"step": 1, "loss": 2.0, "elapsed_s": 30.0, "tokens_per_s": 100.0,
                                      "memory_gb": 1.5, "max_steps": 10},
                                     {"step": 2, "loss": 1.8, "elapsed_s": 90.0, "tokens_per_s": 300.0,
                                      "memory_gb": 1.25, "max_steps": 10}])
    shown = progress_html(run)
    assert 'value="0.2000"' in shown, shown  # 2 of 10 steps
    assert "step 2/10 · elapsed 1 min 30 s · 200 tokens/s (average) · memory 1.50 GB (peak)" in shown, shown
    assert "ETA" not in shown  # not running: no time left to tell


def test_fields_on_the_profiles_values_pass_no_setting():
    assert run_options("cpu", "", "sample", "auto", 0.001, 16, 16, 512, "profile's", "") == [
        "--profile", "cpu", "--dataset", "sample"]
    assert run_options("cpu", "", "", "auto", 0.0002, 16, 32, 512, "off", "") == [
        "--profile", "cpu", "--set", "train.learning_rate=0.0002", "--set", "lora.alpha=32", "--set",
        "train.packing=false"]
    assert changed_length("cpu", 40, 1.0) == (None, None)
    assert changed_length("cpu", 500, 1.0) == (500, None)


def test_other_settings_keep_windows_paths_and_quoted_values():
    text = r'cache_dir=C:\Users\me\runs "run_name=my run" eval_size=0'
    assert split_settings(text) == [r"cache_dir=C:\Users\me\runs", "run_name=my run", "eval_size=0"]
    mapped = with_setting(text, "eval_size=8")
    assert mapped == r'cache_dir=C:\Users\me\runs "run_name=my run" eval_size=8'
    assert split_settings(mapped) == [r"cache_dir=C:\Users\me\runs", "run_name=my run", "eval_size=8"]
