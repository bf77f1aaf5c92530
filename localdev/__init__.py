"""Local tooling: reads template.yaml so tests and the local server run what the template declares."""
