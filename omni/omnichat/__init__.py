"""OmniChat (issue 8): frozen expert encoders fused by Mix-Former into an LLM with LoRA that answers
a spoken turn with text + style tags. See docs/omnichat.md.

Entry points: ``train.train_loop_omnichat`` (stage ``omnichat``), ``respond.Responder`` /
``respond.respond`` (serving), ``evaluate.evaluate_examples`` (metrics)."""
