"""Speech tokenizers; import them from :mod:`omni.speech_tokenizer`."""
