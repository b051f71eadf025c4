"""`korqa train` on a tiny random BERT and a tiny Korean SQuAD file: learning, checkpoints,
exact resume, the test split kept out, logs, curves and the CLI."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from korqa.cli import build_parser, main
from korqa.corpus.formats import read_squad
from korqa.korquad_metric import evaluate_predictions
from korqa.modeling import BertConfig, BertForQuestionAnswering, BertModel
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.reader.config import ReaderConfig
from korqa.reader.directory import ReaderDir
from korqa.reader.predict import PredictConfig, predict
from korqa.tokenization import Tokenizer
from korqa.training import finetune as finetune_module
from korqa.training.finetune import (
    FinetuneConfig,
    finetune,
    freeze_lower_layers,
    load_training_data,
    parameter_groups,
)
from korqa.training.resume import flatten_state, unflatten_state

# Ten articles, so that the split rule (test = article index ≡ 4 mod 5) takes articles 4 and 9.
ARTICLES = [
    ("서울", "서울은 대한민국의 수도이며 인구는 약 천만 명이다. 한강이 도시를 가로지른다.",
     [("대한민국의 수도는?", "서울"), ("서울을 가로지르는 강은?", "한강")]),
    ("부산", "부산은 대한민국 제2의 도시로 해운대 해수욕장이 유명하다. 부산항은 큰 항구이다.",
     [("부산에서 유명한 해수욕장은?", "해운대 해수욕장"), ("부산의 큰 항구는?", "부산항")]),
    ("세종대왕", "세종대왕은 조선의 제4대 국왕으로 1443년에 훈민정음을 창제하였다.",
     [("훈민정음을 창제한 왕은?", "세종대왕"), ("훈민정음은 언제 창제되었나?", "1443년")]),
    ("이순신", "이순신은 조선 중기의 무신으로 거북선을 이용하여 왜군을 물리쳤다.",
     [("이순신이 이용한 배는?", "거북선"), ("이순신이 물리친 군대는?", "왜군")]),
    ("한라산", "한라산은 제주도에 있는 산으로 높이는 1947미터이다. 정상에 백록담이 있다.",
     [("한라산은 어디에 있나?", "제주도"), ("한라산 정상의 호수는?", "백록담")]),
    ("김치", "김치는 배추와 무를 소금에 절여 양념한 한국의 전통 발효 음식이다.",
     [("김치의 주재료는?", "배추"), ("김치는 어떤 음식인가?", "발효 음식")]),
    ("경주", "경주는 신라의 수도였으며 불국사와 석굴암이 있는 역사 도시이다.",
     [("경주는 어느 나라의 수도였나?", "신라"), ("경주에 있는 절은?", "불국사")]),
    ("태권도", "태권도는 한국의 전통 무술로 2000년 시드니 올림픽에서 정식 종목이 되었다.",
     [("태권도가 정식 종목이 된 올림픽은?", "시드니 올림픽"),
      ("태권도는 어느 나라 무술인가?", "한국")]),
    ("한글날", "한글날은 10월 9일로 훈민정음의 반포를 기념하는 국경일이다.",
     [("한글날은 언제인가?", "10월 9일"), ("한글날은 무엇을 기념하나?", "훈민정음의 반포")]),
    ("독도", "독도는 동해에 있는 섬으로 동도와 서도 두 개의 큰 섬으로 이루어져 있다.",
     [("독도는 어느 바다에 있나?", "동해"), ("독도를 이루는 두 섬은?", "동도와 서도")]),
]
TEST_ARTICLES = {4, 9}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SHAPE = dict(max_seq_length=48, doc_stride=16, max_query_length=16)  # several windows each


def squad_json(articles: list, prefix: str = "q") -> dict:
    data = []
    for a, (title, context, qas) in enumerate(articles):
        questions = [{"id": f"{prefix}{a}-{i}", "question": question,
                      "answers": [{"text": answer, "answer_start": context.index(answer)}]}
                     for i, (question, answer) in enumerate(qas)]
        data.append({"title": title, "paragraphs": [{"context": context, "qas": questions}]})
    return {"version": "tiny", "data": data}


def held_out_qids() -> set[str]:
    return {f"q{a}-{i}" for a in TEST_ARTICLES for i in range(len(ARTICLES[a][2]))}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A SQuAD file, and an initial checkpoint: a random tiny BertModel (no QA head) + vocab."""
    root = tmp_path_factory.mktemp("finetune")
    (root / "squad.json").write_text(json.dumps(squad_json(ARTICLES), ensure_ascii=False))
    # Character-level WordPiece: every character alone and as a continuation.
    chars = sorted({c for _, context, qas in ARTICLES for text in [context] + [q for q, _ in qas]
                    for c in text if not c.isspace()})
    vocab = SPECIALS + chars + [f"##{c}" for c in chars]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_vocab(root / "vocab.txt")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    init = root / "init"
    save_pretrained(BertModel(config), init)
    tokenizer.save(init)
    return root


def config_for(root: Path, out: str, **overrides) -> FinetuneConfig:
    base = FinetuneConfig(model=str(root / "init"), data=str(root / "squad.json"),
                          out=str(root / out), batch_size=4, epochs=1, lr=3e-3, warmup=0.1,
                          device="cpu", threads=1, progress=False, **SHAPE)
    return replace(base, **overrides)


@pytest.fixture(scope="module")
def overfit_run(workspace):
    """One run of 12 epochs that records every example it featurises and predicts on."""
    seen: dict[str, set[str]] = {"trained": set(), "predicted": set()}
    convert = finetune_module.convert_examples_to_features
    run_predict = finetune_module.predict

    def recording_convert(examples, *args, **kwargs):
        seen["trained"].update(example.qid for example in examples)
        return convert(examples, *args, **kwargs)

    def recording_predict(model, tokenizer, examples, *args, **kwargs):
        seen["predicted"].update(example.qid for example in examples)
        return run_predict(model, tokenizer, examples, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune_module, "convert_examples_to_features", recording_convert)
        patch.setattr(finetune_module, "predict", recording_predict)
        summary = finetune(config_for(workspace, "overfit", epochs=12, batch_size=3, lr=1e-2,
                                          eval_every=20))
    return workspace / "overfit", summary, seen


def test_loss_falls_when_overfitting_a_few_examples(overfit_run):
    run, summary, _ = overfit_run
    losses = [row["loss"] for row in map(json.loads, (run / "log.jsonl").open())
              if row["kind"] == "train"]
    assert len(losses) == summary["total_steps"] == summary["step"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 2.5  # about log(48) for a fresh head over 48 positions
    assert last < 0.3 * first


def test_best_checkpoint_loads_and_predicts(overfit_run, workspace):
    run, summary, _ = overfit_run
    state = json.loads((run / "best" / "training_state.json").read_text())
    assert state["step"] == summary["best"]["step"]
    assert state["args"]["epochs"] == 12
    split = json.loads((run / "split.json").read_text())
    examples = read_squad(workspace / "squad.json")

    def scores(model_dir: Path, qids: list[str]) -> dict[str, float]:
        model = load_model(BertForQuestionAnswering, model_dir)
        tokenizer = Tokenizer.from_pretrained(model_dir)
        chosen = [example for example in examples if example.qid in set(qids)]
        # The windows the run trained on travel with the model (reader_config.json).
        assert ReaderDir(model_dir).config() == ReaderConfig(**SHAPE)
        predictions = predict(model, tokenizer, chosen, ReaderDir(model_dir).config(),
                              PredictConfig())
        return evaluate_predictions(chosen, {q: c[0].text for q, c in predictions.items()})

    # The saved best model scores exactly what the run measured when it kept it.
    best_f1 = scores(run / "best", split["evaluated_qids"])["f1"]
    assert best_f1 == pytest.approx(state["metrics"]["f1"])
    # And the final weights have learned their training questions.
    assert scores(run / "last", split["train_qids"])["f1"] > 60


def test_trainer_never_reads_test_questions(overfit_run):
    run, summary, seen = overfit_run
    split = json.loads((run / "split.json").read_text())
    test = held_out_qids()
    assert seen["trained"] == set(split["train_qids"])
    assert seen["predicted"] == set(split["validation_qids"])
    assert seen["trained"] and seen["predicted"]
    assert not seen["trained"] & test and not seen["predicted"] & test
    assert not seen["trained"] & seen["predicted"]
    all_qids = {f"q{a}-{i}" for a in range(len(ARTICLES)) for i in range(2)}
    assert seen["trained"] | seen["predicted"] == all_qids - test
    assert summary["validation_examples"] == len(split["validation_qids"])


def test_extra_data_touching_the_test_split_is_dropped(workspace, tmp_path):
    test_title, test_context, _ = ARTICLES[4]
    extra = [("새 문서", "백두산은 한반도에서 가장 높은 산이다.", [("가장 높은 산은?", "백두산")]),
             ("다른 제목", test_context, [("같은 문단의 새 질문?", "제주도")]),
             (test_title, "한라산에는 많은 식물이 산다.", [("식물이 많은 산은?", "한라산")]),
             # Titles are compared as `title_key` spells them (spaces for KorQuAD's "_").
             (f" {test_title} ", "한라산에는 눈이 온다.", [("눈이 오는 산은?", "한라산")])]
    (tmp_path / "extra.json").write_text(json.dumps(squad_json(extra, "x"), ensure_ascii=False))
    extra_files = [str(tmp_path / "extra.json")]
    data = load_training_data(config_for(workspace, "unused", extra_data=extra_files))
    qids = {example.qid for example in data.train}
    assert "x0-0" in qids and not {"x1-0", "x2-0", "x3-0"} & qids
    assert data.dropped == 3
    everything = load_training_data(config_for(workspace, "unused", split="train+validation"))
    assert everything.validation == []
    assert {e.qid for e in everything.train} == {f"q{a}-{i}" for a in range(10) for i in range(2)
                                                 if a not in TEST_ARTICLES}


def test_log_and_curves_are_written(overfit_run):
    run, summary, _ = overfit_run
    rows = [json.loads(line) for line in (run / "log.jsonl").open()]
    kinds = [row["kind"] for row in rows]
    assert kinds[0] == "start" and kinds[-1] == "end"
    evals = [row for row in rows if row["kind"] == "eval"]
    # Every 20 steps and at every epoch end.
    steps_per_epoch = summary["total_steps"] // 12
    expected = sorted({s for s in range(1, summary["total_steps"] + 1)
                       if s % 20 == 0 or s % steps_per_epoch == 0})
    assert [row["step"] for row in evals] == expected
    assert all(0 <= row["f1"] <= 100 and "exact_match" in row for row in evals)
    assert max(row["f1"] for row in evals) == pytest.approx(summary["best"]["f1"])
    png = (run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["features_per_s"] > 0


def test_resume_after_a_stop_ends_with_the_same_weights(workspace):
    # Dropout on, gradient accumulation with a ragged last step, validation between: every
    # source of state (RNG, optimizer, scheduler, data position) has to come back exactly.
    settings = dict(epochs=3, batch_size=3, grad_accum=2, eval_every=4, eval_limit=3)
    straight = finetune(config_for(workspace, "straight", **settings))
    stopped = finetune(config_for(workspace, "resumed", stop_at_step=5, **settings))
    assert stopped["status"] == "stopped" and stopped["step"] == 5
    assert not (workspace / "resumed" / "best").exists() or stopped["best"]["step"] <= 5
    with pytest.raises(ValueError, match="--resume"):
        finetune(config_for(workspace, "resumed", **settings))
    with pytest.raises(ValueError, match="lr was"):
        finetune(config_for(workspace, "resumed", resume=True, **{**settings, "lr": 1e-3}))
    resumed = finetune(config_for(workspace, "resumed", resume=True, **settings))
    assert resumed["status"] == straight["status"] == "finished"
    assert resumed["step"] == straight["step"] == straight["total_steps"] > 5
    assert resumed["best"] == straight["best"]

    a = load_file(workspace / "straight" / "last" / "model.safetensors")
    b = load_file(workspace / "resumed" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    initial = load_model(BertForQuestionAnswering, workspace / "init").state_dict()
    assert (a["bert.encoder.layer.0.output.dense.weight"]
            - initial["bert.encoder.layer.0.output.dense.weight"]).abs().max() > 1e-3

    def train_rows(run: str) -> list[tuple[int, float]]:
        return [(row["step"], row["loss"]) for row in
                map(json.loads, (workspace / run / "log.jsonl").open()) if row["kind"] == "train"]

    resumed, straight = train_rows("resumed"), train_rows("straight")
    assert [step for step, _ in resumed] == [step for step, _ in straight]
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in straight], abs=1e-6)


def test_optimizer_state_round_trips_without_pickle():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tree, tensors = flatten_state({"optimizer": optimizer.state_dict()})
    json.dumps(tree)  # JSON-able as it is
    restored = unflatten_state(json.loads(json.dumps(tree)), tensors)["optimizer"]
    assert set(restored["state"]) == {0, 1}  # integer keys, or load_state_dict drops them
    assert restored["param_groups"][0]["betas"] == (0.9, 0.999)
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(restored)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])


def test_freezing_and_layer_wise_learning_rates():
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    model = BertForQuestionAnswering(config)
    freeze_lower_layers(model, 1, embeddings=False)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters()
                      if ".embeddings." in name or ".layer.0." in name}
    settings = FinetuneConfig(model="", data="", out="", lr=1.0, layer_lr_decay=0.5,
                              weight_decay=0.1)
    groups = parameter_groups(model, settings.lr, settings.weight_decay, settings.layer_lr_decay)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert not any(id(named[name]) in by_param for name in frozen)
    assert by_param[id(named["qa_outputs.weight"])]["lr"] == 1.0
    assert by_param[id(named["bert.encoder.layer.2.attention.self.query.weight"])]["lr"] == 0.5
    assert by_param[id(named["bert.encoder.layer.1.output.dense.weight"])]["lr"] == 0.25
    assert by_param[id(named["bert.encoder.layer.1.output.dense.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["bert.encoder.layer.1.output.LayerNorm.weight"])][
        "weight_decay"] == 0.0
    assert by_param[id(named["bert.encoder.layer.1.output.dense.weight"])]["weight_decay"] == 0.1


def test_cli_defaults_are_the_config_defaults():
    args = build_parser().parse_args(["train", "--model", "m", "--data", "d", "--out", "o"])
    for spec in fields(FinetuneConfig):
        if spec.name in ("model", "data", "out"):
            continue
        default = [] if spec.default_factory is list else spec.default
        assert getattr(args, spec.name) == default, spec.name


def test_cli_train_runs_end_to_end(workspace, capsys):
    out = workspace / "cli"
    code = main(["train", "--model", str(workspace / "init"), "--data",
                 str(workspace / "squad.json"), "--out", str(out), "--epochs", "1",
                 "--batch-size", "4", "--lr", "1e-3", "--max-seq-length", "48",
                 "--doc-stride", "16", "--max-query-length", "16", "--device", "cpu",
                 "--threads", "1", "--eval-limit", "2", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["validation_examples"] == 2
    assert summary["best"]["f1"] >= 0
    assert (out / "best" / "model.safetensors").is_file()
    assert (out / "best" / "vocab.txt").is_file()
    assert (out / "last" / "training_state.safetensors").is_file()
    assert main(["train", "--model", str(workspace / "init"), "--data",
                 str(workspace / "squad.json"), "--out", str(out)]) == 2  # run exists


# ---- torchrun: two CPU processes (gloo) against one at the same global batch ---------------


@pytest.mark.slow
def test_two_processes_follow_one_at_the_same_global_batch(workspace, tmp_path, torchrun):
    # Without dropout, two processes of 2 features a step see the gradients that one process
    # accumulating 2 micro-batches of 2 does: the same losses step by step, and the same
    # weights, up to summation order. (Micro-batches, not one batch of 4: a batch is padded to
    # its longest window, and padding moves the loss.)
    init = tmp_path / "init"
    model = load_model(BertForQuestionAnswering, workspace / "init")
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    save_pretrained(model.bert, init)
    Tokenizer.from_pretrained(workspace / "init").save(init)
    steps = 3  # within the first epoch: its last step is short, and a short step is split
    one = finetune(config_for(workspace, str(tmp_path / "one"), model=str(init), batch_size=2,
                              grad_accum=2, max_steps=steps, eval_limit=2))

    args = ["train", "--model", str(init), "--data", str(workspace / "squad.json"),
            "--out", str(tmp_path / "two"), "--batch-size", "2", "--max-steps", str(steps),
            "--eval-limit", "2", "--lr", "3e-3", "--warmup", "0.1", "--device", "cpu",
            "--threads", "1", "--no-progress", "--max-seq-length", "48", "--doc-stride", "16",
            "--max-query-length", "16"]
    torchrun(2, *args, "--stop-at-step", "2")
    torchrun(2, *args, "--resume")  # the same number of processes picks up where it stopped

    rows = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").open()]
    start = next(row for row in rows if row["kind"] == "start")
    assert (start["world_size"], start["global_batch"]) == (2, 4)
    two_losses = [row["loss"] for row in rows if row["kind"] == "train"]
    one_losses = [row["loss"] for row in map(json.loads, (tmp_path / "one" / "log.jsonl").open())
                  if row["kind"] == "train"]
    assert len(two_losses) == len(one_losses) == one["total_steps"] == steps
    assert two_losses == pytest.approx(one_losses, abs=1e-5)
    a = load_file(tmp_path / "one" / "last" / "model.safetensors")
    b = load_file(tmp_path / "two" / "last" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
