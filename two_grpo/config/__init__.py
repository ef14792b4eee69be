"""Configuration: the typed schema, composition of conf/ with overrides, and the words around keys."""
