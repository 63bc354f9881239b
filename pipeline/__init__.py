"""Stage code for the multimodal sequential-recommendation pipeline.

Data flows one way: sources -> download -> preprocess -> train -> evaluate. Stage modules
(`pipeline.download`, `pipeline.preprocess`, `pipeline.train`, `pipeline.evaluate`) are thin
`main()`s over the importable library modules beside them.
"""
