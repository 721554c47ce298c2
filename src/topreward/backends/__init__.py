"""The engine: where a model runs and how a video's prefixes are asked about, exactly and fast.

  * `base`: the contract (capabilities, `Request`/`Answer`, `require`, `scoring_mode`);
  * `config`: `BackendConfig` and the one table from `backend=` to the class that runs it;
  * `families`: every model quirk (placeholders, frame metadata, positions, DeepStack, chat markup);
  * `video_cache`, `recurrent_cache`: the fast paths (prefix sharing), proven against the reference path;
  * `hf`: transformers in-process (`loading`: device, dtype, model-folder checks); `adapters`: LoRA
    adapters merged into a model;
  * `openai_api`, `gemini`: served and hosted models, sharing `remote` (the key that never prints, retries).
It imports only the basics (`topreward.sampling`, `topreward.config`, `topreward.extras`, ...); it knows no
method, no trainer and no command.
"""
