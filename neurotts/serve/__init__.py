"""``neurotts serve``: a streaming speech server (see neurotts.serve.app)."""
