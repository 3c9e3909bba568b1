"""Entry points of `mnist-tfx`: one module per command, above the layers they compose."""
