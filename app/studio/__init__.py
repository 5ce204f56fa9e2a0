"""The designer's studio: the /designer page, its previews and live reload."""
