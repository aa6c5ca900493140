"""mmdeploy's conversion on torch >= 2.9, and its check against the toolbox's model."""
