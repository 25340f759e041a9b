"""Running the pipelines: the launcher (compile, run locally, submit) and the demo runner with its console."""
