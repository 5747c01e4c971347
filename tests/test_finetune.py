"""Fine-tuning: ``init_from`` (weights by name and shape, the symbol embedding mapped by
symbol), its table and data check, the refusals (audio settings, model kind, freeze names),
``trainer.freeze``, resuming a stopped fine-tune, WaveNet, and the ``preset=finetune`` config.

Runs are ``experiment=tiny`` on synthetic stores (``tests.test_loader.write_store``); the
variants of a store change its symbol table or audio settings the way another corpus would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from typer.testing import CliRunner

from neurotts import checkpoint as ckpt
from neurotts.cli import app
from neurotts.data.store import FeatureStore
from neurotts.text.symbol_map import map_embedding, map_symbols
from neurotts.text.symbols import default_symbols
from neurotts.training.errors import FineTuneError, TrainingInterrupted
from neurotts.training.init_from import initialise, transfer
from neurotts.training.logging import read_train_log
from neurotts.training.tasks import build_task
from tests.test_loader import write_store
from tests.test_training import config, run, signal_self_after

# ------------------------------------------------------------------------------ symbol mapping


def test_symbol_map_shared_new_and_removed() -> None:
    base = ["_", "~", " ", "a", "b", "q", "s", "h", "@AH1", "@S"]
    new = ["_", "~", " ", "a", "b", "Q", "@AH0", "@Z", "@SH", "@HH", "ã", "ʔ"]
    mapping = map_symbols(base, new)
    got = {r.symbol: (r.rule, r.sources) for r in mapping.rows}
    assert [r.symbol for r in mapping.rows] == new  # one row per new symbol, in id order
    assert got["a"] == ("shared", ("a",)) and got["_"] == ("shared", ("_",))
    assert got["@AH0"] == ("stress", ("@AH1",))  # same vowel, another stress digit
    assert got["@Z"] == ("neighbour", ("@S",))  # voicing partner
    assert got["@SH"] == ("neighbour", ("@S",))  # no @ZH in the base: the next neighbour
    assert got["@HH"] == ("spelling", ("h",))  # no phone neighbour: the letter spelling it
    assert got["Q"] == ("letter", ("q",)) and got["ã"] == ("letter", ("a",))
    assert got["ʔ"] == ("mean", ())
    assert mapping.removed == ("q", "s", "h", "@AH1", "@S")
    assert mapping.counts() == {"shared": 5, "stress": 1, "neighbour": 2, "spelling": 1,
                                "letter": 2, "mean": 1}


def test_characters_to_arpabet_starts_every_phone_from_its_letters() -> None:
    """The bench's case: a characters base and an ARPAbet table (letters kept)."""
    base, new = default_symbols("characters"), default_symbols("arpabet")
    mapping = map_symbols(base, new)
    rules = {r.symbol: (r.rule, r.sources) for r in mapping.rows}
    assert all(rules[s][0] == "shared" for s in base) and mapping.removed == ()
    assert rules["@SH"] == ("spelling", ("s", "h")) and rules["@IY1"] == ("spelling", ("e",))
    assert {rule for rule, _ in rules.values()} == {"shared", "spelling"}


def test_map_embedding_copies_shared_rows_and_builds_new_ones() -> None:
    base = ["_", "~", "a", "s", "h"]
    weight = torch.arange(len(base) * 3, dtype=torch.float32).reshape(len(base), 3)
    mapping = map_symbols(base, ["_", "h", "@SH", "?"])
    out = map_embedding(weight, base, mapping)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out[0], weight[0])
    torch.testing.assert_close(out[1], weight[4])  # "h" keeps its vector at its new id
    torch.testing.assert_close(out[2], (weight[3] + weight[4]) / 2)  # s+h
    torch.testing.assert_close(out[3], weight[1:].mean(0))  # mean, pad excluded


def test_transfer_reports_new_and_skipped_tensors() -> None:
    """A tensor only the new model has (a speaker embedding to come) is new and keeps its
    init; a base tensor the new model lacks, or of another shape, is skipped."""
    torch.manual_seed(0)
    base = nn.ModuleDict({"enc": nn.Linear(4, 4), "old": nn.Linear(2, 2), "dec": nn.Linear(4, 3)})
    new = nn.ModuleDict({"enc": nn.Linear(4, 4), "speaker": nn.Embedding(2, 4),
                         "dec": nn.Linear(4, 5)})
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    rows, symbols = transfer(new, base.state_dict(), [], [], None)
    status = {r.name: (r.status, r.reason) for r in rows}
    assert symbols is None
    assert status["enc.weight"][0] == "loaded"
    assert status["speaker.weight"] == ("new", "not in base: keeps its fresh init")
    assert status["old.weight"] == ("skipped", "not in new model")
    assert status["dec.weight"][0] == "skipped" and "(3, 4) vs new (5, 4)" in status["dec.weight"][1]
    torch.testing.assert_close(new.enc.weight, base.enc.weight)
    torch.testing.assert_close(new.speaker.weight, fresh["speaker.weight"])
    torch.testing.assert_close(new.dec.weight, fresh["dec.weight"])


# ------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    base = write_store(root / "base", n=12).root
    new = write_store(root / "new", n=12, seed=1).root
    sym = json.loads((new / "symbols.json").read_text())
    sym["symbols"][sym["symbols"].index("q")] = "Q"  # a symbol replaced
    sym["symbols"].append("@ZH")  # and one added
    (new / "symbols.json").write_text(json.dumps(sym))
    return {"base": base, "new": new}


@pytest.fixture(scope="module")
def base_runs(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("base_runs")
    for model in ("tacotron2", "wavenet"):
        run(config(stores["base"], root / model, "trainer.max_steps=3", model=model))
    return {"tacotron2": root / "tacotron2", "wavenet": root / "wavenet"}


def variant(src: Path, dest: Path, **audio: object) -> Path:
    """A copy of store ``src`` whose config claims other audio settings."""
    shutil.copytree(src, dest)
    cfg = OmegaConf.load(dest / "config.yaml")
    for key, value in audio.items():
        cfg.audio[key] = value
    OmegaConf.save(cfg, dest / "config.yaml")
    return dest


def test_init_from_loads_maps_prints_and_keeps_the_table(stores: dict[str, Path],
                                                         base_runs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    base_ckpt = ckpt.load_checkpoint(base_runs["tacotron2"] / "checkpoints" / "best.pt")
    cfg = config(stores["new"], tmp_path / "ft", f"init_from={base_runs['tacotron2']}",
                 "trainer.max_steps=2")
    # Step 0, directly: every tensor but the embedding equals the base's.
    store = FeatureStore(stores["new"])
    task = build_task(cfg, store)
    report = initialise(str(cfg.init_from), task.model, "tacotron2", store, True)
    assert report.base == base_runs["tacotron2"] / "checkpoints" / "best.pt"
    assert report.counts()["mapped"] == 1 and report.counts()["loaded"] == len(base_ckpt["model"]) - 1
    state = task.model.state_dict()
    for name, value in base_ckpt["model"].items():
        if name != "encoder.embedding.weight":
            torch.testing.assert_close(state[name], value)
    emb, base_emb = state["encoder.embedding.weight"], base_ckpt["model"]["encoder.embedding.weight"]
    old, new = base_ckpt["symbols"], store.symbols
    torch.testing.assert_close(emb[new.index("a")], base_emb[old.index("a")])
    torch.testing.assert_close(emb[new.index("Q")], base_emb[old.index("q")])
    torch.testing.assert_close(emb[new.index("@ZH")], base_emb[old.index("s")])
    # A run: the table is printed, kept in the run folder and in the checkpoint.
    summary, out = run(cfg)
    assert "mapped" in out and "loaded" in out and "'@ZH'<-s" in out
    assert "data check: 0.1 minutes of audio in 9 train utterances" in out
    assert "warning: only 0.1 minutes of training audio" in out
    tsv = (tmp_path / "ft" / "init_from.tsv").read_text().splitlines()
    assert tsv[0] == "kind\tname\tshape\tstatus\treason"
    assert "symbol\t'Q'\t\tletter\tq" in tsv and "symbol\t'q'\t\tremoved\tnot in the new symbol table" in tsv
    assert (tmp_path / "ft" / "data_check.txt").read_text().startswith("data check:")
    saved = ckpt.load_checkpoint(tmp_path / "ft" / "checkpoints" / "step_00000002.pt")["init_from"]
    assert saved["base"] == str(report.base) and saved["tensors"] == {"loaded": len(base_ckpt["model"]) - 1, "mapped": 1}
    assert saved["symbols"]["new"] == {"Q": "q", "@ZH": "s"} and saved["symbols"]["removed"] == ["q"]
    assert saved["data_check"]["unknown"] == ["Q"]  # the new store uses it, the base never saw it


def test_other_audio_settings_are_one_line_before_any_work(stores: dict[str, Path],
                                                           base_runs: dict[str, Path],
                                                           tmp_path: Path) -> None:
    other = variant(stores["new"], tmp_path / "store16k", sample_rate=16000, fmax=7600.0)
    run_dir = tmp_path / "ft"
    with pytest.raises(FineTuneError) as caught:
        run(config(other, run_dir, f"init_from={base_runs['tacotron2']}"))
    message = str(caught.value)
    assert "\n" not in message and "audio settings differ" in message
    assert "sample_rate 22050 vs 16000" in message and "fmax 8000.0 vs 7600.0" in message
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()
    with pytest.raises(FineTuneError, match="data.normalize_mels true vs false"):
        run(config(stores["new"], run_dir, f"init_from={base_runs['tacotron2']}",
                   "data.normalize_mels=false"))


def test_wrong_model_kind_and_missing_base_are_one_line(stores: dict[str, Path],
                                                        base_runs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "experiment=tiny", f"data.features={stores['new']}"]
    result = runner.invoke(app, [*args, f"run.dir={tmp_path / 'a'}", "model=tacotron2",
                                 f"init_from={base_runs['wavenet']}"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "a wavenet checkpoint, but this run trains model=tacotron2" in lines[0]
    result = runner.invoke(app, [*args, f"run.dir={tmp_path / 'b'}",
                                 f"init_from={tmp_path / 'nowhere'}"])
    assert result.exit_code == 2 and "no such checkpoint or run folder" in result.output


def test_freeze_keeps_modules_fixed_and_out_of_the_optimizer(stores: dict[str, Path],
                                                             base_runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    cfg = config(stores["new"], tmp_path / "ft", f"init_from={base_runs['tacotron2']}",
                 "trainer.freeze=[encoder,decoder.prenet]", "trainer.max_steps=3")
    store = FeatureStore(stores["new"])
    start = build_task(cfg, store).model
    initialise(str(cfg.init_from), start, "tacotron2", store, True)
    _, out = run(cfg)
    assert "trainer.freeze: encoder, decoder.prenet not trained" in out
    saved = ckpt.load_checkpoint(tmp_path / "ft" / "checkpoints" / "step_00000003.pt")
    trained = saved["model"]
    for name, value in start.state_dict().items():
        if name.startswith(("encoder.", "decoder.prenet.")) and "running" not in name \
                and "num_batches" not in name:
            torch.testing.assert_close(trained[name], value, rtol=0, atol=0)
    assert not torch.equal(trained["decoder.attention_rnn.cell.weight_ih"],
                           start.state_dict()["decoder.attention_rnn.cell.weight_ih"])
    in_optimizer = sum(len(g["params"]) for g in saved["optimizer"]["param_groups"])
    trainable = [n for n, _ in start.named_parameters()
                 if not n.startswith(("encoder.", "decoder.prenet."))]
    assert in_optimizer == len(trainable)
    with pytest.raises(FineTuneError) as caught:
        run(config(stores["new"], tmp_path / "bad", "trainer.freeze=[encoderr]"))
    assert "'encoderr' names no module" in str(caught.value)
    assert "top-level modules are encoder, decoder, postnet" in str(caught.value)


@pytest.mark.slow
def test_stopped_finetune_resumes_from_its_own_checkpoint(
        stores: dict[str, Path], base_runs: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after step 3; the base then moves away. Running the same command again
    resumes at step 3 without reading init_from, and ends where an uninterrupted fine-tune
    ends (same per-step losses and weights)."""
    base = tmp_path / "base"
    shutil.copytree(base_runs["tacotron2"], base)
    common = [f"init_from={base}", "trainer.max_steps=6", "trainer.log_every=1",
              "trainer.val_every=100", "trainer.checkpoint_every=100"]
    run(config(stores["new"], tmp_path / "a", *common))
    with monkeypatch.context() as patch:
        signal_self_after({2: 1}, patch)
        with pytest.raises(TrainingInterrupted):
            run(config(stores["new"], tmp_path / "b", *common))
    assert (tmp_path / "b" / "checkpoints" / "step_00000003.pt").is_file()
    shutil.move(base, tmp_path / "base-moved")  # a re-initialisation could not find it
    summary, out = run(config(stores["new"], tmp_path / "b", *common))
    assert summary.resumed_from == 3 and summary.step == 6
    assert f"init_from={base} not read: this run resumes from its own checkpoint" in out
    log_a = read_train_log(tmp_path / "a" / "train_log.jsonl")
    log_b = read_train_log(tmp_path / "b" / "train_log.jsonl")
    for step in range(1, 7):
        assert log_b[step]["train/loss"] == pytest.approx(log_a[step]["train/loss"], rel=1e-6)
    final_a = ckpt.load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000006.pt")
    final_b = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000006.pt")
    for name, value in final_a["model"].items():
        torch.testing.assert_close(final_b["model"][name], value, rtol=1e-6, atol=1e-6)
    assert final_b["init_from"]["base"] == final_a["init_from"]["base"]


def test_wavenet_init_from_loads_every_tensor_from_the_ema(stores: dict[str, Path],
                                                           base_runs: dict[str, Path],
                                                           tmp_path: Path) -> None:
    base = ckpt.load_checkpoint(base_runs["wavenet"] / "checkpoints" / "best.pt")
    assert base["ema"] is not None  # experiment=tiny keeps an EMA for WaveNet
    cfg = config(stores["new"], tmp_path / "ft", f"init_from={base_runs['wavenet']}",
                 "trainer.max_steps=1", model="wavenet")
    store = FeatureStore(stores["new"])
    task = build_task(cfg, store)
    report = initialise(str(cfg.init_from), task.model, "wavenet", store, True)
    assert report.weights == "ema" and report.symbols is None
    assert report.counts() == {"loaded": len(base["ema"])}
    for name, value in task.model.state_dict().items():
        torch.testing.assert_close(value, base["ema"][name])
    assert report.data is not None and report.data.used is None  # a vocoder reads no symbols
    _, out = run(cfg)
    assert "data check:" in out and "symbols the train split uses" not in out
    assert (tmp_path / "ft" / "init_from.tsv").is_file()


def test_finetune_preset_composes_over_the_experiment(stores: dict[str, Path],
                                                      tmp_path: Path) -> None:
    plain = config(stores["new"], tmp_path / "a")
    tuned = config(stores["new"], tmp_path / "a", "preset=finetune")
    assert plain.trainer.optimizer.lr == 2e-3 and plain.trainer.schedule.warmup_steps == 5
    assert tuned.trainer.optimizer.lr == 3e-4 and tuned.trainer.schedule.warmup_steps == 100
    assert tuned.trainer.schedule.decay == "cosine" and tuned.trainer.val_every == 250
    assert tuned.model == plain.model  # the experiment's model sizes stay (they must fit the base)
    assert tuned.trainer.batch_size == plain.trainer.batch_size
    result = CliRunner().invoke(app, ["train", "--cfg", "experiment=tiny", "preset=finetune",
                                      f"data.features={stores['new']}", "run.dir=x",
                                      "init_from=runs/base"])
    assert result.exit_code == 0, result.output
    shown = OmegaConf.create(result.output)
    assert shown.init_from == "runs/base" and shown.trainer.optimizer.lr == 3e-4
    assert shown.trainer.freeze == []


def test_data_check_warns_on_little_audio_and_mostly_new_symbols(stores: dict[str, Path]) -> None:
    from neurotts.training.datacheck import check_finetune_data

    store = FeatureStore(stores["new"])
    audio = {"sample_rate": 22050}
    check = check_finetune_data(store, ["_", "~", " ", "a"], audio, uses_symbols=True)
    assert check.utterances == 9 and check.sample_rate == check.base_sample_rate == 22050
    assert 0 < check.minutes < 1 and len(check.warnings) == 2
    assert "minutes of training audio" in check.warnings[0]
    assert f"{len(check.unknown)} of the {len(check.used)} symbols used are new" in check.warnings[1]
    assert "a" in check.used and "a" not in check.unknown and "Q" in check.unknown
    known = check_finetune_data(store, store.symbols, audio, uses_symbols=True)
    assert known.unknown == [] and len(known.warnings) == 1  # only the minutes
