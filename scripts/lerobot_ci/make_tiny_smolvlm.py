"""Write a tiny random SmolVLM2 (Idefics3-family) folder that SmolVLA can use offline as its `vlm_model_name`.

Run in the lerobot venv (transformers < 5). SmolVLA with `load_vlm_weights=false` reads only the config
(`AutoConfig`), the processor (`AutoProcessor`: image processor, video processor, tokenizer with the
`fake_image_token` / `global_image_token` ids) and the tokenizer (`AutoTokenizer`), then builds the model
from the config with random weights; so no weights are written. The tokenizer is a word-level one built
here from a small vocabulary (no download). Usage: python make_tiny_smolvlm.py OUT_DIR [IMAGE_SIZE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    PreTrainedTokenizerFast,
    SmolVLMConfig,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)
from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

SPECIAL = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
    "global_image_token": "<global-img>",
}


def main(out: str, image_size: int = 64) -> None:
    out_dir = Path(out)
    words = "the a an to of and in on into put pick place push press open close drawer button puck goal"
    grid = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    vocab = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>", *SPECIAL.values(), "<video>", *grid]
    vocab += sorted(set(words.split())) + [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = list(dict.fromkeys(vocab))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<pad>",
        additional_special_tokens=[*SPECIAL.values(), "<video>", *grid],
        extra_special_tokens=SPECIAL,
        model_max_length=256,
    )
    patch, scale = 16, 2
    text = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = SmolVLMVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    config = SmolVLMConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config.save_pretrained(out_dir)
    size = {"longest_edge": image_size}
    image_processor = SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False)
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size)
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=(image_size // patch) ** 2 // scale**2,
    )
    processor.save_pretrained(out_dir)
    print(f"wrote tiny SmolVLM2 config + processor to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
