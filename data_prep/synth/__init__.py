"""ShareChatX-style synthetic spoken dialogue generator (issue 5).

``generate_dialogue(index, synth_cfg, seed) -> record`` runs script -> TTS -> duplex assembly ->
acoustic scene -> QC; ``python -m data_prep.synth --config CFG --out DIR`` writes dialogues to
listen to. See docs/architecture.md ("The dialogue record") for the record layout.
"""
from .generate import generate_dialogue, write_script
from .scripts import Script, ScriptTurn, TemplateWriter

__all__ = ["generate_dialogue", "write_script", "Script", "ScriptTurn", "TemplateWriter"]
