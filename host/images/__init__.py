"""Images on disk: the gallery, PNG metadata and chunks, lineage, series and refine."""
