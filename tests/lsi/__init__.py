"""Register-level tests of the LSI53C895A controller and its SCRIPTS processor (no CPU)."""
