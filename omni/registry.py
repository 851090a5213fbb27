"""MLflow model registry glue: log an export as a pyfunc model, resolve ``models:/`` URIs.

An omni export (safetensors + vocab + tokenizers + config, see ``omni.model.save_export``) is
logged as the artifact ``export`` of an ``mlflow.pyfunc`` model, so the registry versions
the exact files Serve loads. ``resolve_export`` turns either a folder or
``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` into a local export folder.
"""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc


class OmniPyfunc(mlflow.pyfunc.PythonModel):
    """``predict`` answers spoken turns half-duplex: input rows with ``wav_path`` (16 kHz mono WAV),
    output rows with the assistant's ``text`` and style."""

    def load_context(self, context):
        from omni.duplex import DuplexEngine

        self.engine = DuplexEngine(context.artifacts["export"])

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import soundfile as sf

        rows = []
        for path in model_input["wav_path"]:
            wave, sr = sf.read(path, dtype="float32")
            if sr != 16000:
                raise ValueError(f"{path}: {sr} Hz, expected 16000 Hz mono")
            r = self.engine.respond(wave)
            rows.append({"text": r["text"], **{f"style_{k}": v for k, v in r.get("style", {}).items()}})
        return pd.DataFrame(rows)


def log_and_register(export_dir: str | Path, run_id: str, name: str, alias: str | None) -> dict:
    """Log ``export_dir`` as a pyfunc model on ``run_id`` and register it as ``name`` (+ alias)."""
    import mlflow

    export_dir = Path(export_dir).resolve()
    if not (export_dir / "export.json").exists():
        raise FileNotFoundError(f"{export_dir} is not an omni export (no export.json): "
                                f"train first with `python -m jobs.curriculum --config CFG`")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=OmniPyfunc(),
                                       artifacts={"export": str(export_dir)},
                                       pip_requirements=["omni"], registered_model_name=name)
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return {"name": name, "version": int(version), "alias": alias, "model_uri": info.model_uri,
            "registry_uri": f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"}


def resolve_export(spec: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local export folder for ``spec`` (a folder, or a ``models:/`` registry URI)."""
    s = str(spec)
    if s.startswith("models:/"):
        import mlflow

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=s.rstrip("/") + "/artifacts/export",
                                                        dst_path=str(cache_dir) if cache_dir else None)
        except Exception as e:  # registry lookup errors are long; keep the gist
            raise FileNotFoundError(f"cannot load {s} from the MLflow registry at {mlflow.get_tracking_uri()}: "
                                    f"{str(e).splitlines()[0]}") from None
        return Path(local)
    p = Path(s)
    if not (p / "export.json").exists():
        raise FileNotFoundError(f"model {s} is not an omni export folder (no export.json) nor a models:/ URI")
    return p.resolve()
