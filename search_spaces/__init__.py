"""Search spaces: YAML files (one per framework) and the parser that turns them into Optuna distributions."""
