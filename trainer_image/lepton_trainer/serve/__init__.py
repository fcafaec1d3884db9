"""Model server for exported lepton-model directories (Open Inference Protocol v2 over HTTP).

`python -m lepton_trainer.serve --model-dir DIR --name NAME`: starlette app on uvicorn, dynamic batching,
Prometheus metrics, graceful drain on SIGTERM. The InferenceService's pods run it.
"""
