from dataclasses import asdict

import pytest

from trainer.config import Config, build, parse_set
from trainer.errors import UserError
from trainer.profiles import resolve


def test_defaults_are_the_unsloth_llama32_notebook_recipe():
    c = Config()
    assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.lora.bias) == (16, 16, 0.0, "none")
    assert c.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert (c.lora.use_rslora, c.lora.use_loftq) == (False, False)
    t = c.train
    assert (t.micro_batch_size, t.grad_accum_steps, t.learning_rate, t.lr_scheduler) == (2, 4, 2e-4, "linear")
    assert (t.warmup_steps, t.weight_decay, t.optimizer, t.seed) == (5, 0.01, "adamw_8bit", 3407)
    assert (c.model.max_seq_length, t.gradient_checkpointing) == (2048, "unsloth")
    assert c.data.dataset == "mlabonne/FineTome-100k"


def test_precedence_defaults_then_profile_then_set_then_flags():
    config, reason = resolve("rtx3070", ["learning_rate=1e-4", "train.max_steps=7", "lora.r=8"],
                             {"train.max_steps": 9})
    assert config.profile == "rtx3070" and "--profile" in reason
    assert config.model.dtype == "bfloat16"  # from the profile
    assert config.train.learning_rate == 1e-4 and config.lora.r == 8  # from --set
    assert config.train.max_steps == 9  # the explicit flag wins over --set
    assert config.train.weight_decay == 0.01  # default untouched


def test_set_parses_toml_values_and_lists():
    flat = parse_set(["target_modules=[\"q_proj\", \"v_proj\"]", "packing=true", "dataset=data/x.jsonl",
                      "model.name=org/model"])
    config = build([("--set", flat)], "test")
    assert config.lora.target_modules == ("q_proj", "v_proj")
    assert config.train.packing is True
    assert config.data.dataset == "data/x.jsonl" and config.model.name == "org/model"
    assert build([("--set", parse_set(["target_modules=q_proj,k_proj"]))], "t").lora.target_modules == ("q_proj",
                                                                                                       "k_proj")


@pytest.mark.parametrize("item, message", [
    ("lr=1", "unknown setting 'lr'"),
    ("micro_batch_size=two", "is not a valid int"),
    ("micro_batch_size=0", "must be at least 1"),
    ("dtype=float8", "is not one of auto, bfloat16, float16, float32"),
    ("packing=maybe", "is not a valid bool"),
    ("eval_size=2.5", "data.eval_size = 2.5"),
    ("learning_rate", "expected KEY=VALUE"),
    ("epochs=0", "must be positive"),
    ("report_to=tensorboard,comet", "run.report_to lists comet"),
])
def test_bad_settings_name_the_key_and_value(item, message):
    with pytest.raises(UserError, match=message):
        build([("--set", parse_set([item]))], "t")


@pytest.mark.parametrize("typed, hint", [
    ("nope", "--set help lists every setting with its meaning."),  # nothing near: where the list is, not the list
    ("learning_rat", "Did you mean train.learning_rate? --set help lists"),
    ("lora_r", "Did you mean lora.r? "),  # a section and leaf joined with "_"
    ("epoch", "Did you mean train.epochs? "),
    ("batch", "Did you mean train.micro_batch_size? "),  # no name spelled alike: one that holds it
])
def test_unknown_setting_names_the_near_ones_not_every_setting(typed, hint):
    with pytest.raises(UserError) as e:
        parse_set([f"{typed}=1"])
    assert e.value.hint.startswith(hint) and "train.warmup_steps" not in e.value.hint


def test_custom_profile_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('engine = "transformers"\n[train]\nmicro_batch_size = 8\n[model]\ndtype = "float16"\n')
    config, _ = resolve(str(path))
    assert (config.profile, config.engine, config.train.micro_batch_size) == ("mine", "transformers", 8)
    assert config.model.dtype == "float16"


@pytest.mark.parametrize("text, message", [
    ("[train]\nmicro_batch_size = \n", "is not valid TOML"),
    ("[train]\nbatch = 4\n", "unknown field 'batch' in \\[train\\]"),
    ("[trian]\nmicro_batch_size = 4\n", "unknown field 'trian'"),
    ("[train]\nmicro_batch_size = \"four\"\n", "micro_batch_size = 'four' is not a valid int"),
])
def test_bad_profile_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as e:
        resolve(str(path))
    assert str(path) in e.value.message


def test_a_bad_value_in_a_profile_file_is_fixed_as_the_file_writes_it(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nmicro_batch_size = \"four\"\n")
    with pytest.raises(UserError) as e:
        resolve(str(path))
    assert e.value.hint == "Give a whole number, e.g. micro_batch_size = 2 under [train]."
    path.write_text("[model]\nmax_seq_length = 0\n")
    with pytest.raises(UserError) as e:
        resolve(str(path))
    assert e.value.hint == "Give a value in range, e.g. the built-in default: max_seq_length = 2048 under [model]."


def test_config_round_trips_through_its_saved_toml(tmp_path):
    from trainer.runs import RunDir

    config, _ = resolve("rtx2060s", ["learning_rate=3e-4", "target_modules=q_proj,v_proj", "report_to=mlflow,wandb"],
                        {"run.run_dir": str(tmp_path / "run")})
    run = RunDir.create(config)
    again, _ = resolve(str(run.config))
    assert asdict(again) | {"profile": "rtx2060s"} == asdict(config)
    assert again.run.report_to == ("mlflow", "wandb") and Config().run.report_to == ()  # no tracker by default


def test_a_profiles_preference_table_applies_to_dpo_and_orpo_under_what_is_set():
    sft, _ = resolve("rtx3070")
    assert sft.train.packing and sft.train.micro_batch_size == 2 and sft.model.max_seq_length == 2048
    for method in ("dpo", "orpo"):
        pairs, _ = resolve("rtx3070", flags={"train.method": method})
        assert not pairs.train.packing and pairs.train.micro_batch_size == 1 and pairs.train.grad_accum_steps == 8
        assert pairs.train.gradient_checkpointing == "unsloth" and pairs.model.max_seq_length == 1024
    given, _ = resolve("rtx3070", ["micro_batch_size=2", "max_seq_length=512"], {"train.method": "dpo"})
    assert given.train.micro_batch_size == 2 and given.model.max_seq_length == 512  # --set wins over [preference]
    quadro, _ = resolve("quadro-rtx5000", ["method=dpo"])  # the method from --set counts too
    assert quadro.model.max_seq_length == 2048 and quadro.train.micro_batch_size == 1


def test_choices_and_bounds_come_from_the_schema():
    """Each setting's choices (its Literal) and bounds are declared once, in the schema; the CLI's choices and the
    checks of --set and profiles ask it."""
    from trainer import cli
    from trainer.config import SETTINGS, settings

    actions = {a.dest: a for p in cli.parser()._subparsers._group_actions[0].choices.values() for a in p._actions}
    assert tuple(actions["format"].choices) == settings.choices("data.format") == ("auto", "sharegpt", "openai",
                                                                                    "alpaca", "text")
    assert tuple(actions["method"].choices) == settings.choices("train.method") == ("sft", "dpo", "orpo",
                                                                                        "kto")
    assert all(s.help for s in SETTINGS.values())
    for key, s in SETTINGS.items():
        if s.choices and s.kind is str:
            with pytest.raises(UserError, match=f"{key} = 'nope' is not one of {', '.join(s.choices)}"):
                build([("--set", {key: "nope"})], "t")
        for bound in (s.at_least, s.above):
            if bound is not None:
                with pytest.raises(UserError, match=key):
                    build([("--set", {key: bound - 1})], "t")


def test_a_run_reads_its_config_back_typed(tmp_path):
    from trainer.runs import RunDir

    config, _ = resolve("cpu", ["method=dpo", "report_to=tensorboard"], {"run.run_dir": str(tmp_path / "run")})
    run = RunDir.create(config)
    run.set_status("completed", profile="cpu")
    assert run.read_config() == config
    with pytest.raises(UserError, match="has no config.toml"):
        RunDir(tmp_path).read_config()
