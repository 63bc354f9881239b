"""The multimodal sequential-recommendation pipeline: a library, and the DVC stages over it.

Data flows one way: sources -> download -> preprocess -> features -> (pre-training) -> train ->
evaluate. The stages are thin commands in `pipeline/stages/` (one per dvc.yaml stage); everything
they call lives in the library modules here. docs/architecture.md has the map.
"""
