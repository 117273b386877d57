"""The lesson machinery: the model, the schema that loads lesson.toml, host features, and the
evaluation of checks (check50's semantics). The probes the checks run are in lessons/probes."""
